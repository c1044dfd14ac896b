"""The host-usage facts as a capture stores them (`raw["host_usage"]`), and their checker. Pure.

`sources/host_usage.gather` writes them; `analyses/host_needs.needs` interprets them;
`sources/capture` checks facts read back from a snapshot (perhaps edited by hand) with
`check_layout`, so that their interpreter can trust the types.

Layout of the facts (version 1). Every list may be empty; readers ignore unknown keys. `chain` is
the names walked from the use down to the PCI function (last item = that address); `pci` is the
address ("DDDD:BB:DD.F") or null when the chain ends off PCI (a loop device, a PS/2 keyboard)::

    {"version": 1,
     "storage": [{"use": "/", "role": "root" | "boot" | "efi" | "swap" | "mount",
                  "source": "/dev/nvme0n1p2", "fstype": "ext4",
                  "chain": ["nvme0n1p2", "nvme0n1", "nvme0", "0000:01:00.0"], "pci": "0000:01:00.0"}],
     "network": [{"interface": "enp6s0", "operstate": "up",
                  "chain": ["enp6s0", "0000:06:00.0"], "pci": "0000:06:00.0",
                  "default_route": [{"family": "ipv4", "via": ["vmbr0", "enp6s0"]}]}],
     "console": [{"what": "fb0", "name": "bochsdrmfb", "chain": ["fb0", "0000:04:00.0"],
                  "pci": "0000:04:00.0"}],
     "input":   [{"what": "keyboard" | "mouse", "name": "USB Keyboard",
                  "chain": ["input3", "usb1", "0000:02:00.0"], "pci": "0000:02:00.0"}],
     "proxmox": {"node": "pve",
                 "vms": [{"vmid": "100", "key": "hostpci0", "value": "0000:07:00.0,pcie=1",
                          "pending": false}],
                 "mappings": [{"id": "sata", "node": "pve", "path": "0000:07:00.0"}]},
     "zfs": {"rpool": "text of `zpool status -P rpool`"},
     "notes": ["what could not be read"]}
"""

from __future__ import annotations

from typing import Any

from vfiokit.errors import BadInput

VERSION = 1

#: The facts' lists of entries (each an object of strings, plus `chain` and `default_route`).
_ENTRY_LISTS = ("storage", "network", "console", "input")


def is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_layout(facts: Any, where: str) -> None:
    """Check facts read back from a snapshot (perhaps edited by hand) against the layout above, so
    that their interpreter (analyses.host_needs) can trust the types; BadInput names the field."""

    def bad(field: str, expected: str) -> BadInput:
        return BadInput(f"{where}: 'host_usage{field}' must be {expected}")

    if facts is None:
        return
    if not isinstance(facts, dict):
        raise bad("", "an object or null")
    for key in _ENTRY_LISTS:
        entries = facts.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise bad(f".{key}", "a list of objects")
        for entry in entries:
            for name, value in entry.items():
                if name == "chain" and not is_string_list(value):
                    raise bad(f".{key}[].chain", "a list of strings")
                if name == "default_route" and not (
                        isinstance(value, list)
                        and all(isinstance(r, dict) and is_string_list(r.get("via", [])) for r in value)):
                    raise bad(f".{key}[].default_route", "a list of objects with a 'via' list of strings")
                if name not in ("chain", "default_route") and not isinstance(value, str | None):
                    raise bad(f".{key}[].{name}", "a string or null")
    pve = facts.get("proxmox")
    if pve is not None:
        if not isinstance(pve, dict):
            raise bad(".proxmox", "an object or null")
        for key in ("vms", "mappings"):
            entries = pve.get(key)
            if entries is not None and not (isinstance(entries, list)
                                            and all(isinstance(e, dict) for e in entries)):
                raise bad(f".proxmox.{key}", "a list of objects")
    zfs = facts.get("zfs")
    if zfs is not None and not (isinstance(zfs, dict) and all(isinstance(v, str) for v in zfs.values())):
        raise bad(".zfs", "an object of strings")
    notes = facts.get("notes")
    if notes is not None and not is_string_list(notes):
        raise bad(".notes", "a list of strings")
