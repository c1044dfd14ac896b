"""Hand-built host trees for the host-usage gatherer: a synthetic PCI machine written out as a real
sysfs tree (`tree.materialize`), then block devices, network interfaces, framebuffers and input
devices laid under its PCI functions with real folders and symlinks, as the kernel lays them out
(relative links, /sys/class/* -> /sys/devices/..., /sys/dev/block/MAJ:MIN). Hand-made: each
test builds only the rule it checks; real captures of the same facts come from the QEMU lab."""

from __future__ import annotations

import os
from pathlib import Path

from vfiokit.model import (
    PCIE_DOWNSTREAM_PORT,
    PCIE_ENDPOINT,
    PCIE_ROOT_PORT,
    PCIE_UPSTREAM_PORT,
    PciAddress,
)
from vfiokit.sources import tree
from vfiokit.sources.synthetic import Spec, capture_of

#: The article's group 15 in small: a chipset switch holding a USB controller, a SATA controller,
#: a boot GPU with its audio, two NICs and the Marvell SATA card; an NVMe alone in group 14.
B550_LIKE = [
    Spec("00:01.0", 0x1022, 0x1482, 0x060000, group=0),
    Spec("00:01.1", 0x1022, 0x1483, 0x060400, pcie_type=PCIE_ROOT_PORT, secondary_bus=1, group=1,
         driver="pcieport"),
    Spec("01:00.0", 0x15B7, 0x5006, 0x010802, parent="00:01.1", pcie_type=PCIE_ENDPOINT, group=14,
         driver="nvme", reset_method="flr bus"),
    Spec("00:02.1", 0x1022, 0x1483, 0x060400, pcie_type=PCIE_ROOT_PORT, secondary_bus=2,
         subordinate_bus=10, group=2, driver="pcieport"),
    Spec("02:00.0", 0x1022, 0x43EE, 0x0C0330, parent="00:02.1", pcie_type=PCIE_ENDPOINT, multifunction=True,
         group=15, driver="xhci_hcd"),
    Spec("02:00.1", 0x1022, 0x43EB, 0x010601, parent="00:02.1", pcie_type=PCIE_ENDPOINT, multifunction=True,
         group=15, driver="ahci"),
    Spec("02:00.2", 0x1022, 0x43E9, 0x060400, parent="00:02.1", pcie_type=PCIE_UPSTREAM_PORT,
         multifunction=True, secondary_bus=3, subordinate_bus=10, group=15, driver="pcieport"),
    *(Spec(f"03:{s:02x}.0", 0x1022, 0x43EA, 0x060400, parent="02:00.2", pcie_type=PCIE_DOWNSTREAM_PORT,
           secondary_bus=b, group=15, driver="pcieport") for s, b in ((0, 4), (1, 6), (2, 7), (3, 8), (4, 0xA))),
    Spec("04:00.0", 0x10DE, 0x1430, 0x030000, revision=0xA1, parent="03:00.0", pcie_type=PCIE_ENDPOINT,
         multifunction=True, group=15, driver="nouveau", boot_vga=True),
    Spec("04:00.1", 0x10DE, 0x0FBA, 0x040300, revision=0xA1, parent="03:00.0", pcie_type=PCIE_ENDPOINT,
         multifunction=True, group=15, driver="snd_hda_intel"),
    Spec("06:00.0", 0x10EC, 0x8168, 0x020000, revision=6, parent="03:01.0", pcie_type=PCIE_ENDPOINT,
         group=15, driver="r8169"),
    Spec("07:00.0", 0x1B4B, 0x9215, 0x010601, revision=0x11, parent="03:02.0", pcie_type=PCIE_ENDPOINT,
         group=15, driver="ahci", reset_method="bus"),
    Spec("08:00.0", 0x15B7, 0x5006, 0x010802, parent="03:03.0", pcie_type=PCIE_ENDPOINT, group=15,
         driver="nvme"),
    Spec("0a:00.0", 0x10EC, 0x8125, 0x020000, revision=4, parent="03:04.0", pcie_type=PCIE_ENDPOINT,
         group=15, driver="r8169"),
]


class HostTree:
    """A root folder holding a PCI machine, plus writers for what the host uses on top of it."""

    def __init__(self, root: Path, specs: list[Spec] = B550_LIKE) -> None:
        self.root = root
        tree.materialize(capture_of(specs), root)
        self._minor = 0
        for d in ("proc/self", "proc/net", "etc"):
            (root / d).mkdir(parents=True, exist_ok=True)

    # -- plumbing
    def _link(self, link: str, target: Path) -> None:
        """A relative symlink, as sysfs makes them."""
        path = self.root / link
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(target, path.parent), path)

    def pci_dir(self, addr: str) -> Path:
        path = self.root / "sys/bus/pci/devices" / str(PciAddress.parse(addr))
        assert path.is_symlink(), f"no device {addr} in the test machine"
        return Path(os.path.realpath(path))

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    # -- block devices
    def _block(self, folder: Path, name: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self._minor += 1
        majmin = f"259:{self._minor}"
        (folder / "dev").write_text(majmin + "\n")
        self._link(f"sys/class/block/{name}", folder)
        self._link(f"sys/dev/block/{majmin}", folder)
        return folder

    def disk(self, addr: str, name: str, via: str = "", parts: int = 0) -> Path:
        """A disk under PCI function `addr` (`via` = what sits between: "nvme/nvme0",
        "ata1/host0/target0:0:0/0:0:0:0")."""
        base = self.pci_dir(addr) / via if via else self.pci_dir(addr)
        folder = self._block(base / "block" / name if not via.startswith("nvme") else base / name, name)
        for i in range(1, parts + 1):
            pname = f"{name}p{i}" if name[-1].isdigit() else f"{name}{i}"
            p = self._block(folder / pname, pname)
            (p / "partition").write_text(f"{i}\n")
        return folder

    def virtual_block(self, name: str, slaves: list[str], dm_name: str | None = None) -> None:
        """A device-mapper or md device stacked on `slaves` (their names)."""
        folder = self._block(self.root / "sys/devices/virtual/block" / name, name)
        (folder / "slaves").mkdir()
        for s in slaves:
            os.symlink(os.path.relpath(os.path.realpath(self.root / "sys/class/block" / s), folder / "slaves"),
                       folder / "slaves" / s)
        if dm_name:
            self.write(f"sys/devices/virtual/block/{name}/dm/name", dm_name + "\n")
            self._link(f"dev/mapper/{dm_name}", self.root / "dev" / name)
            (self.root / "dev" / name).touch()

    def mounts(self, *lines: str) -> None:
        self.write("proc/self/mounts", "".join(f"{line} rw 0 0\n" for line in
                                               ("sysfs /sys sysfs", "proc /proc proc", *lines)))

    def swaps(self, *paths: str) -> None:
        self.write("proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
                   + "".join(f"{p}\tpartition\t8388604\t\t0\t\t-2\n" for p in paths))

    # -- network
    def nic(self, addr: str, name: str, via: str = "") -> None:
        base = self.pci_dir(addr) / via if via else self.pci_dir(addr)
        folder = base / "net" / name
        folder.mkdir(parents=True)
        (folder / "operstate").write_text("up\n")
        self._link(f"sys/class/net/{name}", folder)

    def virtual_nic(self, name: str, ports: list[str] = (), slaves: list[str] = (), lower: list[str] = ()) -> None:
        folder = self.root / "sys/devices/virtual/net" / name
        folder.mkdir(parents=True)
        (folder / "operstate").write_text("up\n")
        self._link(f"sys/class/net/{name}", folder)
        if ports:  # a bridge: brif/<port> -> the port's brport folder
            (folder / "brif").mkdir()
            for p in ports:
                os.symlink(os.path.relpath(os.path.realpath(self.root / "sys/class/net" / p) + "/brport",
                                           folder / "brif"), folder / "brif" / p)
        if slaves:
            self.write(f"sys/devices/virtual/net/{name}/bonding/slaves", " ".join(slaves) + "\n")
        for low in lower:
            os.symlink(os.path.relpath(os.path.realpath(self.root / "sys/class/net" / low), folder),
                       folder / f"lower_{low}")

    def route4(self, iface: str) -> None:
        self.write("proc/net/route",
                   "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
                   f"{iface}\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
                   f"{iface}\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")

    def route6(self, iface: str) -> None:
        z = "0" * 32
        self.write("proc/net/ipv6_route",
                   f"{z} 00 {z} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 {iface}\n"
                   f"{z} 00 {z} 00 {z} ffffffff 00000001 00000000 00200200       lo\n")
