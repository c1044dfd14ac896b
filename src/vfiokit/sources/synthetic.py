"""Build raw captures of machines described as data: the bundled samples that reconstruct a board
from what people published, the benchmark's large trees, and tests of one rule at a time.

Config space is encoded as the hardware would present it (header, a PCIe capability at 0x40, an
ACS extended capability at 0x100), so everything downstream decodes it exactly like a live read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vfiokit import __version__
from vfiokit.model import PciAddress
from vfiokit.sources import capture as cap


@dataclass
class Spec:
    """One function of a synthetic machine. `parent` is the bridge above it (None: root bus)."""

    address: str
    vendor: int
    device: int
    class_code: int
    revision: int = 0
    parent: str | None = None
    #: PCIe port type (model.PCIE_*); None: a conventional PCI function with no PCIe capability.
    pcie_type: int | None = None
    #: (cap, ctrl) of an ACS capability, or None for none.
    acs: tuple[int, int] | None = None
    multifunction: bool = False
    subsystem: tuple[int, int] | None = None
    driver: str | None = None
    group: int | None = None
    boot_vga: bool | None = None
    reset_method: str | None = None
    #: Bridges: secondary bus number (header type 1 is implied).
    secondary_bus: int | None = None
    subordinate_bus: int | None = None
    #: SR-IOV: the physical function of this virtual function.
    physfn: str | None = None
    extra_attrs: dict[str, str] = field(default_factory=dict)

    @property
    def is_bridge(self) -> bool:
        return self.secondary_bus is not None


def spec_config(s: Spec, size: int = 4096) -> bytes:
    """Config space for `s`; `size` 64 mimics a non-root reader."""
    cfg = bytearray(4096)
    cfg[0:2] = s.vendor.to_bytes(2, "little")
    cfg[2:4] = s.device.to_bytes(2, "little")
    cfg[8] = s.revision
    cfg[9:12] = s.class_code.to_bytes(3, "little")
    cfg[0x0E] = (1 if s.is_bridge else 0) | (0x80 if s.multifunction else 0)
    if s.is_bridge:
        cfg[0x18] = 0
        cfg[0x19] = s.secondary_bus or 0
        cfg[0x1A] = s.subordinate_bus if s.subordinate_bus is not None else (s.secondary_bus or 0)
    elif s.subsystem:
        cfg[0x2C:0x2E] = s.subsystem[0].to_bytes(2, "little")
        cfg[0x2E:0x30] = s.subsystem[1].to_bytes(2, "little")
    if s.pcie_type is not None:
        cfg[0x06] = 0x10  # status: capability list present
        cfg[0x34] = 0x40
        cfg[0x40] = 0x10  # PCI Express capability, last in the list
        cfg[0x41] = 0x00
        cfg[0x42:0x44] = ((s.pcie_type << 4) | 2).to_bytes(2, "little")
        if s.acs is not None:
            cfg[0x100:0x104] = (0x000D | (1 << 16)).to_bytes(4, "little")  # ACS, v1, last
            cfg[0x104:0x106] = s.acs[0].to_bytes(2, "little")
            cfg[0x106:0x108] = s.acs[1].to_bytes(2, "little")
    return bytes(cfg[:size])


def capture_of(specs: list[Spec], *, as_root: bool = True, host: dict[str, Any] | None = None,
               groups: bool = True) -> dict[str, Any]:
    """A raw capture of the machine `specs` describes (groups from each Spec's `group`)."""
    by_addr = {str(PciAddress.parse(s.address)): s for s in specs}
    paths: dict[str, str] = {}

    def path_of(addr: str) -> str:
        if addr not in paths:
            s = by_addr[addr]
            a = PciAddress.parse(addr)
            if s.parent is None:
                paths[addr] = f"pci{a.domain:04x}:{a.bus:02x}/{addr}"
            else:
                paths[addr] = f"{path_of(str(PciAddress.parse(s.parent)))}/{addr}"
        return paths[addr]

    devices = {}
    iommu_groups: dict[str, list[str]] = {}
    for addr, s in sorted(by_addr.items()):
        attrs = dict(s.extra_attrs)
        if s.boot_vga is not None:
            attrs["boot_vga"] = "1" if s.boot_vga else "0"
        if s.reset_method is not None:
            attrs["reset_method"] = s.reset_method
        links = {}
        if s.driver:
            links["driver"] = s.driver
        if s.physfn:
            links["physfn"] = str(PciAddress.parse(s.physfn))
        if s.group is not None and groups:
            iommu_groups.setdefault(str(s.group), []).append(addr)
        devices[addr] = {
            "path": path_of(addr),
            "attrs": attrs,
            "links": links,
            "files": (["pci_bus"] if s.is_bridge else []) + (["reset"] if s.reset_method else []),
            **cap.pack_config(spec_config(s, 4096 if as_root else 64)),
        }
    return {
        "format": cap.FORMAT,
        "version": cap.VERSION,
        "captured": {"at": None, "by": "synthetic", "as_root": as_root, "vfiokit": __version__},
        "host": host or {},
        "iommu_groups": {k: sorted(v) for k, v in iommu_groups.items()} or None,
        "devices": devices,
        "read_notes": [],
    }
