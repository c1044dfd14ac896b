"""The kernel's `pci=` command-line options that change ACS, read as drivers/pci/pci.c reads them.
Pure, no I/O.

`pci=` takes comma-separated options (pci_setup cuts the value at each ','); one of them,
`disable_acs_redir=<dev>[;<dev>...]`, names devices with pci_dev_str_match's syntax:
`[<domain>:]<bus>:<dev>.<fn>[/<dev>.<fn>]*` (a path of devfns below a device on a root bus,
pci_dev_str_match_path) or `pci:<vendor>:<device>[:<subvendor>:<subdevice>]` (hex, 0 = any).
"""

from __future__ import annotations

import re

from vfiokit.model import Device, Topology

_BDF = re.compile(r"(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$")
_DEVFN = re.compile(r"([0-9a-fA-F]{1,2})\.([0-7])$")


def pci_option(cmdline: str | None, name: str) -> str | None:
    """The value of `pci=...,<name>=VALUE,...` (the last one on the line wins, as pci_setup
    assigns the parameter once per occurrence), or None."""
    found = None
    for word in (cmdline or "").split():
        if word.startswith("pci="):
            for option in word[4:].split(","):
                key, sep, value = option.partition("=")
                if sep and key == name:
                    found = value
    return found


def _path_matches(spec: str, dev: Device, top: Topology) -> bool:
    """pci_dev_str_match_path: the last devfn is `dev`, each earlier one its parent bridge, and the
    first also gives the (domain and) bus of the topmost one."""
    *path, last = spec.split("/")
    steps = [*path, last]
    node: Device | None = dev
    for i, step in enumerate(reversed(steps)):
        if node is None:
            return False
        first = i == len(steps) - 1
        m = _BDF.match(step) if first else _DEVFN.match(step)
        if m is None:
            return False
        if first:
            domain, bus, slot, fn = m.groups()
            if int(domain or "0", 16) != node.address.domain or int(bus, 16) != node.address.bus:
                return False
        else:
            slot, fn = m.groups()
        if int(slot, 16) != node.address.slot or int(fn) != node.address.function:
            return False
        node = top.by_address.get(node.parent) if node.parent is not None else None
    return True


def _ids_match(spec: str, dev: Device) -> bool:
    parts = spec.split(":")
    if len(parts) not in (2, 4):
        return False
    try:
        wanted = [int(p, 16) for p in parts]
    except ValueError:
        return False
    have = (dev.vendor_id, dev.device_id, dev.subsystem_vendor_id, dev.subsystem_device_id)
    return all(w == 0 or w == h for w, h in zip(wanted, have, strict=False))


def names_device(devices: str, dev: Device, top: Topology) -> bool:
    """Whether a `;`-separated device list (pci_dev_str_match syntax) names `dev`."""
    for spec in devices.split(";"):
        spec = spec.strip()
        if spec.startswith("pci:"):
            if _ids_match(spec[4:], dev):
                return True
        elif spec and _path_matches(spec, dev, top):
            return True
    return False
