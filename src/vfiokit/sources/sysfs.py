"""The live host: read `/sys`, `/proc` and `/etc` below a root folder into a raw capture.

`root` is `/` on a real host; tests and `--root` point it at a folder holding the same layout.
Symlinks inside the tree are resolved inside `root` (an absolute link target `/sys/...` is taken
as `<root>/sys/...`), so a captured tree can be read anywhere.

Cost: one `readlink`, one `scandir` and a few small reads per PCI function; the group folders
are listed once. No pci.ids lookups here (names are the renderer's business).
"""

from __future__ import annotations

import datetime
import getpass
import os
from pathlib import Path
from typing import Any

from vfiokit import __version__
from vfiokit.errors import BadInput, ExitCode, VfiokitError
from vfiokit.model import Topology
from vfiokit.sources import capture as cap


def _read(path: str) -> str | None:
    """Text of a small file, stripped; None when it does not exist or cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _link_basename(path: str) -> str | None:
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def _inside(root: str, link_dir: str, target: str) -> str:
    """Resolve a symlink target as the kernel would, but with `root` standing for `/`."""
    if os.path.isabs(target):
        return os.path.normpath(root + target)
    return os.path.normpath(os.path.join(link_dir, target))


def _read_config(path: str, notes: list[str], addr: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except PermissionError:
        notes.append(f"{addr}: config space not readable (permission denied)")
        return {"config": None, "config_size": None}
    except OSError as e:
        if not os.path.exists(path):
            notes.append(f"{addr}: no config file")
        else:
            notes.append(f"{addr}: config space not readable ({e.strerror})")
        return {"config": None, "config_size": None}
    return cap.pack_config(data)


def _device_entry(root: str, sysdevices: str, devdir: str, addr: str, notes: list[str]) -> dict:
    entries: set[str] = set()
    try:
        with os.scandir(devdir) as it:
            entries = {e.name for e in it}
    except OSError as e:
        raise BadInput(f"{devdir}: cannot list device folder ({e.strerror})") from None
    attrs = {}
    for name in cap.ATTRS:
        if name in entries:
            value = _read(os.path.join(devdir, name))
            if value is not None:
                attrs[name] = value
    for required in ("vendor", "device", "class"):
        if required not in attrs:
            notes.append(f"{addr}: sysfs attribute '{required}' missing in {devdir}")
    links = {}
    for name in cap.LINKS:
        if name in entries:
            target = _link_basename(os.path.join(devdir, name))
            if target is not None:
                links[name] = target
    return {
        "path": os.path.relpath(devdir, sysdevices),
        "attrs": attrs,
        "links": links,
        "files": [f for f in cap.FILES if f in entries],
        **(_read_config(os.path.join(devdir, "config"), notes, addr) if "config" in entries
           else {"config": None, "config_size": None}),
    }


def _read_groups(root: str) -> dict[str, list[str]] | None:
    base = os.path.join(root, "sys/kernel/iommu_groups")
    try:
        numbers = [e.name for e in os.scandir(base) if e.name.isdigit()]
    except OSError:
        return None
    groups = {}
    for n in numbers:
        try:
            members = sorted(e.name for e in os.scandir(os.path.join(base, n, "devices")))
        except OSError:
            members = []
        groups[n] = members
    return groups or None


def _cpu(root: str) -> tuple[str | None, list[str] | None]:
    text = _read(os.path.join(root, "proc/cpuinfo"))
    if text is None:
        return None, None
    vendor = flags = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and vendor is None:
            vendor = value.strip()
        elif key == "flags" and flags is None:
            flags = sorted(set(value.split()) & {"vmx", "svm", "hypervisor"})
        if vendor and flags is not None:
            break
    return vendor, flags


def _host(root: str) -> dict[str, Any]:
    vendor, flags = _cpu(root)
    try:
        units = sorted(os.listdir(os.path.join(root, "sys/class/iommu")))
    except OSError:
        units = None
    dmi = os.path.join(root, "sys/devices/virtual/dmi/id")
    board = " ".join(filter(None, (_read(os.path.join(dmi, k)) for k in ("board_vendor", "board_name"))))
    hostname = _read(os.path.join(root, "proc/sys/kernel/hostname")) or _read(
        os.path.join(root, "etc/hostname"))
    return {
        "kernel_release": _read(os.path.join(root, "proc/sys/kernel/osrelease")),
        "cmdline": _read(os.path.join(root, "proc/cmdline")),
        "cpu_vendor": vendor,
        "cpu_flags": flags,
        "iommu_units": units,
        "hostname": hostname,
        "board": board or None,
        "dmesg": None,
    }


def capture(root: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """Read the host below `root` into a raw capture (see `capture.py` for its layout)."""
    root = os.path.abspath(root)
    buspci = os.path.join(root, "sys/bus/pci/devices")
    sysdevices = os.path.join(root, "sys/devices")
    try:
        names = sorted(os.listdir(buspci))
    except FileNotFoundError:
        raise VfiokitError(
            f"{buspci} does not exist: no PCI bus here (is {root} a Linux root folder?)",
            ExitCode.BAD_INPUT,
        ) from None
    except OSError as e:
        raise BadInput(f"{buspci}: cannot list ({e.strerror})") from None
    notes: list[str] = []
    devices = {}
    for name in names:
        link = os.path.join(buspci, name)
        try:
            target = _inside(root, buspci, os.readlink(link))
        except OSError:
            target = link  # a real folder, not a link (some test trees); read it as is
        if not os.path.isdir(target):
            notes.append(f"{name}: {link} points to {target}, which does not exist; device left out")
            continue
        devices[name] = _device_entry(root, sysdevices, target, name, notes)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.geteuid())
    raw = {
        "format": cap.FORMAT,
        "version": cap.VERSION,
        "captured": {
            "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "by": user,
            "as_root": os.geteuid() == 0,
            "vfiokit": __version__,
            "root": root,
        },
        "host": _host(root),
        "iommu_groups": _read_groups(root),
        "devices": devices,
        "read_notes": notes,
    }
    return raw


def read_topology(root: str | os.PathLike[str] = "/") -> Topology:
    """Capture the host below `root` and model it."""
    raw = capture(root)
    origin = "live host" if os.path.abspath(root) == "/" else f"tree {Path(root)}"
    return cap.build_topology(raw, origin)
