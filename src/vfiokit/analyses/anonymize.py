"""Anonymize a capture (snapshot) or a topology before sharing it: pure functions, no I/O.

Replaced by stable placeholders (the same original always gives the same placeholder, so
references between fields still agree): the hostname (and the Proxmox node name), the user
who captured and the folder given to --root, mount points other than / /boot /boot/efi, block
device sources, input device names, Proxmox mapping ids, ZFS pool names and their status text,
VM names, and anywhere in any text: MAC addresses, IPv4/IPv6 addresses, UUIDs, home folders.
In config space, the PCIe Device Serial Number capability (often derived from a NIC's MAC, PCIe
spec 7.9.3) is zeroed.

Kept, because the analyses need them: classes, ids, the PCI tree, IOMMU groups, drivers, the
kernel release and command line (with UUIDs and addresses replaced), which PCI function holds
/, /boot, swap, the default route and the console, and which VM (by number) holds what.
`vfiokit snapshot --anonymize` calls `anonymize_capture`; a renderer (markdown) can call
`anonymize_topology` on any source.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vfiokit.model import HostInfo, Topology

MAC = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:])")
IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])")
#: Hex groups and colons; a PCI address (two colons) is not one: `_ipv6` keeps only tokens with
#: '::' or at least four colons.
IPV6_TOKEN = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
UUID = re.compile(r"(?<![0-9A-Fa-f-])[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}(?![0-9A-Fa-f-])")
#: FAT/NTFS volume ids on a command line: root=UUID=1234-ABCD.
SHORT_UUID = re.compile(r"(?<=UUID=)(?![0-9A-Fa-f]{8}-)[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}\b")
HOME = re.compile(r"(?<![\w/])/home/[^/\s'\"]+")
#: Mount points that say nothing about the user and that the analyses name.
STANDARD_MOUNTS = {"/", "/boot", "/boot/efi", "/efi", "[SWAP]"}
#: Kernel block device names: kept, they are what lsblk shows and say nothing about the user.
KERNEL_BLOCK = re.compile(r"^/dev/(?:sd[a-z]+|nvme\d+n\d+|vd[a-z]+|xvd[a-z]+|hd[a-z]+|md\d+|dm-\d+|mmcblk\d+)"
                          r"(?:p?\d+)?$")
DSN_CAP_ID = 0x0003


@dataclass
class _Placeholders:
    """Original value -> placeholder, per kind, numbered in first-seen order."""

    made: dict[str, dict[str, str]] = field(default_factory=dict)

    def get(self, kind: str, value: str, form: Callable[[int], str]) -> str:
        table = self.made.setdefault(kind, {})
        if value not in table:
            table[value] = form(len(table) + 1)
        return table[value]

    def literal(self) -> dict[str, str]:
        """Field values (hostnames, paths, names) that may recur inside free text."""
        kinds = ("hostname", "user", "root folder", "mount point", "block device", "input device name",
                 "mapping id", "ZFS pool", "VM name")
        return {o: p for k in kinds for o, p in self.made.get(k, {}).items() if len(o) >= 3}


_FORMS: dict[str, Callable[[int], str]] = {
    "hostname": lambda n: f"host-{n}",
    "user": lambda n: f"user-{n}",
    "root folder": lambda n: f"/anon/root-{n}",
    "mount point": lambda n: f"/anon/mount-{n}",
    "block device": lambda n: f"/dev/anon-{n}",
    "input device name": lambda n: f"input device {n}",
    "mapping id": lambda n: f"mapping-{n}",
    "ZFS pool": lambda n: f"pool-{n}",
    "VM name": lambda n: f"vm-{n}",
    "MAC address": lambda n: f"02:00:00:00:00:{n:02x}",
    "IP address": lambda n: f"192.0.2.{n}",
    "IPv6 address": lambda n: f"2001:db8::{n:x}",
    "UUID": lambda n: f"00000000-0000-0000-0000-{n:012x}",
    "home folder": lambda n: f"/home/user-{n}",
    "device serial number": lambda n: str(n),
}


class _Anonymizer:
    def __init__(self) -> None:
        self.ph = _Placeholders()

    def value(self, kind: str, original: str | None) -> str | None:
        if original is None or original == "":
            return original
        return self.ph.get(kind, original, _FORMS[kind])

    def text(self, s: str) -> str:
        """Free text: known field values first (as whole tokens), then the patterns."""
        for original, placeholder in sorted(self.ph.literal().items(), key=lambda kv: -len(kv[0])):
            # Whole token only: a hostname 'pve' must not touch the kernel release '6.5.11-8-pve'.
            s = re.sub(rf"(?<![\w.-]){re.escape(original)}(?![\w-])", placeholder, s)
        s = MAC.sub(lambda m: self.value("MAC address", m[0].lower().replace("-", ":")) or "", s)
        s = UUID.sub(lambda m: self.value("UUID", m[0].lower()) or "", s)
        s = SHORT_UUID.sub(lambda m: self.value("UUID", m[0].upper()) or "", s)
        s = IPV4.sub(lambda m: self.value("IP address", m[0]) or "", s)
        s = IPV6_TOKEN.sub(self._ipv6, s)
        return HOME.sub(lambda m: self.value("home folder", m[0]) or "", s)

    def _ipv6(self, m: re.Match[str]) -> str:
        tok = m[0]
        # A MAC (or its placeholder) has five colons too; MAC.sub has already dealt with it.
        if ("::" in tok or tok.count(":") >= 4) and not MAC.fullmatch(tok):
            return self.value("IPv6 address", tok.lower()) or ""
        return tok

    def deep(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, list):
            return [self.deep(x) for x in obj]
        if isinstance(obj, dict):
            return {k: self.deep(v) for k, v in obj.items()}
        return obj

    def summary(self) -> str:
        parts = [f"{len(v)} {k}{('es' if k.endswith('ss') else 's') if len(v) > 1 else ''}"
                 for k, v in self.ph.made.items() if v]
        return ("anonymized: " + (", ".join(parts) if parts else "nothing personal found")
                + " replaced by placeholders; kept: classes, ids, topology, groups, drivers and which "
                  "devices hold /, /boot, swap, the default route and the console")


def _scrub_dsn(cfg_hex: str | None, an: _Anonymizer) -> str | None:
    """Zero the Device Serial Number extended capability in captured config space.

    Extended capabilities start at 0x100, each a 32-bit header: id (15:0), version (19:16),
    next offset (31:20) (PCIe spec 7.6.3; the kernel walks them the same way in
    pci_find_next_ext_capability)."""
    if not cfg_hex:
        return cfg_hex
    data = bytearray.fromhex(cfg_hex)
    pos, seen = 0x100, set()
    while pos >= 0x100 and pos + 12 <= len(data) and pos not in seen:
        seen.add(pos)
        header = int.from_bytes(data[pos:pos + 4], "little")
        if header in (0, 0xFFFFFFFF):
            break
        if header & 0xFFFF == DSN_CAP_ID and any(data[pos + 4:pos + 12]):
            an.value("device serial number", data[pos + 4:pos + 12].hex())
            data[pos + 4:pos + 12] = bytes(8)
        pos = header >> 20
    # The capture keeps config space without its trailing zeros (capture.pack_config).
    return bytes(data).rstrip(b"\0").hex()


def _fields(an: _Anonymizer, raw: Mapping[str, Any]) -> None:
    """Register the field values that are personal, so free text loses them too."""
    host = raw.get("host") or {}
    an.value("hostname", host.get("hostname"))
    cap = raw.get("captured") or {}
    if cap.get("by") not in (None, "root"):
        an.value("user", cap.get("by"))
    if cap.get("root") not in (None, "/"):
        an.value("root folder", cap.get("root"))
    usage = raw.get("host_usage") or {}
    for s in usage.get("storage") or ():
        if s.get("use") not in STANDARD_MOUNTS and s.get("role") not in ("root", "boot", "efi", "swap"):
            an.value("mount point", s.get("use"))
        src = s.get("source")
        if src and not KERNEL_BLOCK.match(src):
            an.value("block device", src)
    for i in usage.get("input") or ():
        an.value("input device name", i.get("name"))
    pve = usage.get("proxmox") or {}
    an.value("hostname", pve.get("node"))
    for mp in pve.get("mappings") or ():
        an.value("mapping id", mp.get("id"))
        an.value("hostname", mp.get("node"))
    for vm in pve.get("vms") or ():
        an.value("VM name", vm.get("name"))
    for pool in usage.get("zfs") or {}:
        an.value("ZFS pool", pool)


def _usage(an: _Anonymizer, usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    out: dict[str, Any] = an.deep(dict(usage))
    for s, orig in zip(out.get("storage") or (), usage.get("storage") or (), strict=False):
        s["use"] = an.ph.made.get("mount point", {}).get(orig.get("use"), s.get("use"))
    for vm in (out.get("proxmox") or {}).get("vms") or ():
        # hostpci values name mappings: 'mapping=ID' follows the renamed mapping.
        vm["value"] = re.sub(r"(?<=mapping=)[^,;]+",
                             lambda m: an.ph.made.get("mapping id", {}).get(m[0], m[0]), str(vm.get("value", "")))
    if "zfs" in out and isinstance(out["zfs"], dict):
        # The status text lists disks by id (model and serial number): only the pool's name stays.
        out["zfs"] = {an.ph.made["ZFS pool"][p]: "(removed by --anonymize)" for p in usage["zfs"]}
    return out


def anonymize_capture(raw: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """A copy of snapshot `raw` with personal facts replaced, and the one line saying what was."""
    an = _Anonymizer()
    _fields(an, raw)
    out = copy.deepcopy(dict(raw))
    devices = {}
    for addr, entry in (raw.get("devices") or {}).items():
        e = dict(copy.deepcopy(entry))
        if isinstance(e.get("config"), str):
            e["config"] = _scrub_dsn(e["config"], an)
        devices[addr] = e
    out["devices"] = devices
    # `doctor` (sources/doctor_facts.py) holds the node name in pve.node and the mapping entries
    # ("node=NAME,path=..."), replaced by the same placeholder as everywhere else.
    for key in ("host", "captured", "read_notes", "sample", "doctor"):
        if key in raw:
            out[key] = an.deep(copy.deepcopy(raw[key]))
    if "captured" in out:
        cap = out["captured"]
        if "by" in cap and cap["by"] not in (None, "root"):
            cap["by"] = an.value("user", raw["captured"]["by"])
    out["host_usage"] = _usage(an, raw.get("host_usage"))
    return out, an.summary()


def anonymize_topology(top: Topology) -> tuple[Topology, str]:
    """The same for a topology (any source): host facts and host-usage facts; devices carry no
    personal data once read (names, ids, classes, drivers, groups)."""
    an = _Anonymizer()
    an.value("hostname", top.host.hostname)
    _fields(an, {"host_usage": top.host_usage})
    host = HostInfo(*(_deep_tuple(an, value) for value in top.host))
    host = host._replace(hostname=an.value("hostname", top.host.hostname))
    # the source names the host too ("snapshot host.json taken ... on pve1")
    return (dataclasses.replace(top, host=host, host_usage=_usage(an, top.host_usage), source=an.text(top.source),
                                notes=tuple(an.text(n) for n in top.notes)), an.summary())


def _deep_tuple(an: _Anonymizer, v: Any) -> Any:
    if isinstance(v, tuple):
        return tuple(_deep_tuple(an, x) for x in v)
    return an.text(v) if isinstance(v, str) else v
