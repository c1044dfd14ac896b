"""Lay a raw capture out as a sysfs tree on disk: `<dest>/sys/devices/...`, `/sys/bus/pci/devices`
links and `/sys/kernel/iommu_groups`, laid out as the kernel does.

It lets `lspci -A linux-sysfs -O sysfs.path=<dest>/sys/bus/pci` and the article's script run
against a captured or synthetic machine, and lets the sysfs reader be tested on real files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vfiokit.sources.capture import config_bytes

# pciutils' sysfs access requires these (lib/sysfs.c sysfs_scan reads them unconditionally).
_LSPCI_DEFAULTS = {"irq": "0", "resource": "\n".join(["0x0000000000000000 " * 2 + "0x0000000000000000"] * 13)}


def _id_attrs(cfg: bytes) -> dict[str, str]:
    """The sysfs attributes the kernel derives from config space (drivers/pci/pci-sysfs.c)."""
    word = lambda off: int.from_bytes(cfg[off : off + 2], "little")  # noqa: E731
    return {"vendor": f"0x{word(0):04x}", "device": f"0x{word(2):04x}",
            "class": f"0x{int.from_bytes(cfg[9:12], 'little'):06x}", "revision": f"0x{cfg[8]:02x}",
            "subsystem_vendor": f"0x{word(0x2C):04x}", "subsystem_device": f"0x{word(0x2E):04x}"}


def materialize(raw: dict[str, Any], dest: str | os.PathLike[str]) -> Path:
    """Write the capture's devices and groups below `dest`; return `dest`."""
    dest = Path(dest)
    sysdev = dest / "sys/devices"
    buspci = dest / "sys/bus/pci/devices"
    buspci.mkdir(parents=True, exist_ok=True)
    groups_dir = dest / "sys/kernel/iommu_groups"
    groups_dir.mkdir(parents=True, exist_ok=True)
    for number, members in (raw.get("iommu_groups") or {}).items():
        gdir = groups_dir / str(number) / "devices"
        gdir.mkdir(parents=True, exist_ok=True)
        for m in members:
            path = raw["devices"].get(m, {}).get("path")
            if path:
                os.symlink(os.path.relpath(sysdev / path, gdir), gdir / m)
                (sysdev / path).mkdir(parents=True, exist_ok=True)
                os.symlink(os.path.relpath(gdir.parent, sysdev / path), sysdev / path / "iommu_group")
    for addr, dev in raw["devices"].items():
        ddir = sysdev / dev["path"]
        ddir.mkdir(parents=True, exist_ok=True)
        cfg = config_bytes(dev, addr)
        attrs = {**_LSPCI_DEFAULTS, **(_id_attrs(cfg) if cfg else {}), **dev.get("attrs", {})}
        for name, value in attrs.items():
            (ddir / name).write_text(value + "\n")
        if cfg is not None:
            (ddir / "config").write_bytes(cfg)
        for name in dev.get("files", ()):
            target = ddir / name
            if name == "pci_bus":
                target.mkdir(exist_ok=True)
            else:
                target.write_text("")
        links = dev.get("links", {})
        if "driver" in links:
            drv = dest / "sys/bus/pci/drivers" / links["driver"]
            drv.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(drv, ddir), ddir / "driver")
        if "physfn" in links:
            pf = raw["devices"].get(links["physfn"], {}).get("path")
            if pf:
                os.symlink(os.path.relpath(sysdev / pf, ddir), ddir / "physfn")
        os.symlink(os.path.relpath(ddir, buspci), buspci / addr)
    host = raw.get("host") or {}
    proc = dest / "proc"
    for key, rel in (("cmdline", "cmdline"), ("kernel_release", "sys/kernel/osrelease")):
        if host.get(key) is not None:
            (proc / rel).parent.mkdir(parents=True, exist_ok=True)
            (proc / rel).write_text(host[key] + "\n")
    if host.get("iommu_units") is not None:  # an empty folder: the class exists, no unit in it
        (dest / "sys/class/iommu").mkdir(parents=True, exist_ok=True)
    for unit in host.get("iommu_units") or ():
        (dest / "sys/class/iommu" / unit).mkdir(parents=True, exist_ok=True)
    return dest
