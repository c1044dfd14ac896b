"""What `vfiokit doctor` reads beyond the PCI tree, below a root folder: ACPI table names, loaded
and configured modules, `/proc/iomem`, the Proxmox VM options passthrough depends on.

The CPU flags, `/sys/class/iommu`, the groups, the kernel command line and the kernel log lines
(with which log they came from) are the capture's `host` facts (`sysfs._host`); these are the rest.
`gather(root)` returns JSON-ready facts, stored in a capture as raw["doctor"] so that `doctor
--snapshot` judges someone else's host; an older snapshot without them loads, and the checks that
need them say "not checked". Every read goes through `rootfs` below the root.

Layout (version 1); each value is null when its source could not be read::

    {"version": 1,
     "acpi_tables": ["APIC", "DMAR", ...],             # /sys/firmware/acpi/tables
     "modules": ["vfio", "vfio_pci", ...],             # /proc/modules, plus /sys/module/vfio*
     "allow_unsafe_interrupts": "Y" | "N",             # vfio_iommu_type1's parameter
     "boot_modules": [{"file": "/etc/modules", "line": 3, "module": "vfio"}],
     "initramfs_modules": [{"file": "/etc/initramfs-tools/modules", "line": 1, "module": "vfio"}],
     "vfio_ids": [{"file": "/etc/modprobe.d/vfio.conf", "line": 1, "ids": ["10de:1c82"]}],
     "iomem": [{"start": "e0000000", "end": "efffffff", "name": "0000:01:00.0", "depth": 1}],
     "pve": {"node": "pve", "vms": {"100": {"machine": "q35", "hostpci0": "...", ...}},
             "mappings": {"gpu": ["node=pve,path=0000:01:00.0,id=10de:1c82,iommugroup=14"]}},
     "notes": ["what could not be read"]}
"""

from __future__ import annotations

import os
import re
from typing import Any

from vfiokit import rootfs
from vfiokit.errors import BadInput
from vfiokit.formats import initramfs_modules, modprobe, pve_mapping
from vfiokit.formats import pve_config as pc
from vfiokit.model import Topology

VERSION = 1

#: The VM options the doctor's VM checks read (qemu-server PVE/QemuServer.pm $confdesc); the rest of
#: a VM config (disks, network, cloud-init secrets) stays out of a snapshot.
VM_KEYS = ("machine", "bios", "efidisk0", "balloon", "memory", "onboot")
_HOSTPCI = re.compile(r"^hostpci\d+$")
#: `/proc/iomem` entries kept: PCI functions (their BARs) and the firmware framebuffers that sit in
#: one (x86 sysfb `BOOTFB`, efifb, vesafb, simplefb, simpledrm: drivers/firmware/sysfb.c,
#: arch/x86/kernel/sysfb_simplefb.c).
FRAMEBUFFERS = ("BOOTFB", "efifb", "vesafb", "simplefb", "simple-framebuffer", "simpledrm")
_IOMEM = re.compile(r"^(\s*)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.+)$")
_PCI_NAME = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
#: Where systemd-modules-load reads module lists (modules-load.d(5)), and Debian's /etc/modules.
_MODULES_LOAD = ("/etc/modules", "/etc/modules-load.d", "/run/modules-load.d", "/usr/lib/modules-load.d",
                 "/lib/modules-load.d")
_MODPROBE_D = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d")


def _names(root: str, path: str) -> list[str] | None:
    try:
        return sorted(os.listdir(rootfs.resolve_under(root, path)))
    except (OSError, BadInput):
        return None


def _conf_files(root: str, folders: tuple[str, ...], suffix: str) -> list[str]:
    """Files as modules-load.d(5) / modprobe.d(5) order them: by name, the first folder holding a
    name wins (/etc overrides /usr/lib); a plain file in the list is taken as it is."""
    chosen: dict[str, str] = {}
    for folder in folders:
        names = _names(root, folder)
        if names is None:
            if rootfs.text_under(root, folder) is not None:
                chosen.setdefault(os.path.basename(folder), folder)
            continue
        for n in names:
            if n.endswith(suffix):
                chosen.setdefault(n, f"{folder}/{n}")
    return [chosen[n] for n in sorted(chosen)]


def _module_configs(root: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None,
                                        list[dict[str, Any]]]:
    """(modules loaded at boot, modules in the initramfs (None: no initramfs-tools), vfio-pci ids
    from modprobe.d), parsed by the formats `bind --persistent` writes them with."""
    boot = [{"file": path, "line": n, "module": m} for path in _conf_files(root, _MODULES_LOAD, ".conf")
            for n, m in initramfs_modules.entries(rootfs.text_under(root, path))]
    text = rootfs.text_under(root, initramfs_modules.INITRAMFS_MODULES)
    initramfs = None if text is None else [
        {"file": initramfs_modules.INITRAMFS_MODULES, "line": n, "module": m}
        for n, m in initramfs_modules.entries(text)]
    ids = [{"file": path, "line": n, "ids": found} for path in _conf_files(root, _MODPROBE_D, ".conf")
           for n, found in modprobe.vfio_ids_lines(rootfs.text_under(root, path) or "")]
    return boot, initramfs, ids


def _modules(root: str) -> list[str] | None:
    text = rootfs.text_under(root, "/proc/modules")
    if text is None:
        return None
    loaded = {line.split()[0] for line in text.splitlines() if line.strip()}
    # A vfio built into the kernel is not in /proc/modules but has its /sys/module folder.
    loaded |= {n for n in _names(root, "/sys/module") or () if n.startswith("vfio")}
    return sorted(loaded)


def _iomem(root: str) -> list[dict[str, Any]] | None:
    text = rootfs.text_under(root, "/proc/iomem")
    if text is None:
        return None
    out = []
    for line in text.splitlines():
        m = _IOMEM.match(line)
        if m and (_PCI_NAME.match(m[4]) or m[4] in FRAMEBUFFERS):
            out.append({"start": m[2].lower(), "end": m[3].lower(), "name": m[4], "depth": len(m[1]) // 2})
    return out


def _pve(root: str) -> dict[str, Any] | None:
    confdir = rootfs.resolve_under(root, "/etc/pve/qemu-server")
    mapping_text = rootfs.text_under(root, "/etc/pve/mapping/pci.cfg")
    if not os.path.isdir(confdir) and mapping_text is None:
        return None
    vms: dict[str, dict[str, str]] = {}
    for name in _names(root, "/etc/pve/qemu-server") or ():
        if not re.fullmatch(r"\d+\.conf", name):
            continue
        conf = pc.parse_config(rootfs.cat(os.path.join(confdir, name)) or "", name, strict=False)
        keys = {k for k in conf.used_keys() if k in VM_KEYS or _HOSTPCI.match(k)}
        # The value the VM gets at its next start ([PENDING] wins): what the checks are about.
        vms[name[:-5]] = {k: v for k in sorted(keys) if (v := conf.effective(k)) is not None}
    mappings = pve_mapping.parse_mapping_cfg(mapping_text or "", strict=False)
    node = (rootfs.read_hostname(root) or "").split(".")[0] or None
    return {"node": node, "vms": vms, "mappings": mappings}


def gather(root: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """Read the doctor's facts below `root`; never raises for a missing source (null instead)."""
    root = os.path.abspath(root)
    boot, initramfs, ids = _module_configs(root)
    return {
        "version": VERSION,
        "acpi_tables": _names(root, "/sys/firmware/acpi/tables"),
        "modules": _modules(root),
        "allow_unsafe_interrupts": rootfs.attr_under(
            root, "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts"),
        "boot_modules": boot,
        "initramfs_modules": initramfs,
        "vfio_ids": ids,
        "iomem": _iomem(root),
        "pve": _pve(root),
    }


def check_layout(facts: Any, where: str) -> None:
    """The types of what a snapshot's raw["doctor"] holds, so the checks can trust them."""
    def bad(field: str, expected: str) -> BadInput:
        return BadInput(f"{where}: 'doctor.{field}' must be {expected}")

    if facts is None:
        return
    if not isinstance(facts, dict):
        raise bad("", "an object or null")
    for key in ("acpi_tables", "modules"):
        v = facts.get(key)
        if v is not None and not (isinstance(v, list) and all(isinstance(s, str) for s in v)):
            raise bad(key, "a list of strings or null")
    for key in ("boot_modules", "initramfs_modules", "vfio_ids", "iomem"):
        v = facts.get(key)
        if v is not None and not (isinstance(v, list) and all(isinstance(e, dict) for e in v)):
            raise bad(key, "a list of objects or null")
    for key in ("boot_modules", "initramfs_modules"):
        for e in facts.get(key) or ():
            if not (isinstance(e.get("file"), str) and isinstance(e.get("line"), int)
                    and isinstance(e.get("module"), str)):
                raise bad(f"{key}[]", "objects with file (a string), line (a number) and module (a string)")
    for e in facts.get("vfio_ids") or ():
        ids = e.get("ids")
        if not (isinstance(e.get("file"), str) and isinstance(e.get("line"), int) and isinstance(ids, list)
                and all(isinstance(i, str) for i in ids)):
            raise bad("vfio_ids[]", "objects with file (a string), line (a number) and ids (strings)")
    if not isinstance(facts.get("allow_unsafe_interrupts"), str | None):
        raise bad("allow_unsafe_interrupts", "a string or null")
    for e in facts.get("iomem") or ():
        if not (isinstance(e.get("start"), str) and isinstance(e.get("end"), str)
                and isinstance(e.get("name"), str) and isinstance(e.get("depth"), int)):
            raise bad("iomem[]", "objects with start, end, name (strings) and depth (a number)")
        try:
            int(e["start"], 16), int(e["end"], 16)
        except ValueError:
            raise bad("iomem[].start/end", "hexadecimal") from None
    pve = facts.get("pve")
    if pve is not None:
        if (not isinstance(pve, dict) or not isinstance(pve.get("vms", {}), dict)
                or not isinstance(pve.get("node"), str | None)):
            raise bad("pve", "an object with a 'vms' object and a 'node' string")
        for vmid, opts in pve.get("vms", {}).items():
            if not isinstance(opts, dict) or not all(isinstance(v, str) for v in opts.values()):
                raise bad(f"pve.vms.{vmid}", "an object of strings")
        maps = pve.get("mappings", {})
        if not isinstance(maps, dict) or not all(isinstance(v, list) and all(isinstance(s, str) for s in v)
                                                 for v in maps.values()):
            raise bad("pve.mappings", "an object of lists of strings")


def load(root: str | None = None, snapshot_file: str | None = None,
         sample: str | None = None) -> tuple[Topology, dict[str, Any] | None]:
    """The topology and the doctor's facts of one source: a root folder (`/` by default), a
    snapshot file or a bundled sample; facts are None for a snapshot taken before doctor."""
    from vfiokit.sources import capture as cap
    from vfiokit.sources import samples, snapshot, sysfs

    if snapshot_file is not None:
        raw, origin = snapshot.load_raw(snapshot_file), f"snapshot {snapshot_file}"
    elif sample is not None:
        raw, origin = samples.load_raw(sample), f"sample {sample}"
    else:
        root = os.path.abspath(root or "/")
        raw, origin = sysfs.capture(root), "live host" if root == "/" else f"tree {root}"
    return cap.build_topology(raw, origin), raw.get("doctor")
