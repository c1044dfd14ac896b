"""A stand-in for the kernel's side of the sysfs bind writes, on a tree below a root folder.

The real kernel answers the writes in the QEMU lab (tests/test_lab_bind.py); on a folder tree
nothing would happen, so this reacts as drivers/base/bus.c and drivers/pci/pci-driver.c do:
`driver_override` keeps the value (an empty write clears it, read back as "(null)"),
`driver/unbind` removes the `driver` link, `drivers_probe` links the device to the driver its
override names (when that driver is loaded) or, with no override, to the driver it had at boot;
vfio-pci taking a device makes `/dev/vfio/<group>`."""

from __future__ import annotations

import os
from pathlib import Path


class KernelStandin:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.devices = root / "sys/bus/pci/devices"
        self.drivers = root / "sys/bus/pci/drivers"
        self.natural: dict[str, str | None] = {}
        for d in sorted(self.devices.iterdir()):
            (d / "driver_override").write_text("(null)\n")
            link = d / "driver"
            self.natural[d.name] = os.path.basename(os.readlink(link)) if link.is_symlink() else None
        self.drivers.mkdir(parents=True, exist_ok=True)
        for drv in self.drivers.iterdir():
            self._driver_files(drv)
        (root / "sys/bus/pci/drivers_probe").write_text("")
        self.writes: list[tuple[str, str]] = []

    def _driver_files(self, drv: Path) -> None:
        for f in ("bind", "unbind"):
            (drv / f).write_text("")

    def load_vfio(self) -> None:
        """What `modprobe vfio-pci` does here: the driver appears."""
        drv = self.drivers / "vfio-pci"
        drv.mkdir(exist_ok=True)
        self._driver_files(drv)

    def driver(self, address: str) -> str | None:
        link = self.devices / address / "driver"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def __call__(self, path: str, value: str) -> None:
        self.writes.append((path, value))
        parts = path.strip("/").split("/")
        if parts[-1] == "driver_override":
            (self.root / path.lstrip("/")).write_text((value.strip() or "(null)") + "\n")
        elif parts[-2:] == ["driver", "unbind"]:
            (self.devices / parts[-3] / "driver").unlink()
        elif parts[-1] == "drivers_probe":
            dev = self.devices / value
            override = (dev / "driver_override").read_text().strip()
            want = self.natural[value] if override == "(null)" else override
            if want and (self.drivers / want).is_dir() and not (dev / "driver").is_symlink():
                os.symlink(os.path.relpath(self.drivers / want, dev.resolve()), dev.resolve() / "driver")
                if want == "vfio-pci":
                    group = os.path.basename(os.readlink(dev / "iommu_group"))
                    (self.root / "dev/vfio").mkdir(parents=True, exist_ok=True)
                    (self.root / "dev/vfio" / group).write_text("")
