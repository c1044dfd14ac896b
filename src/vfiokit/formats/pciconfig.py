"""Decode the parts of PCI configuration space that IOMMU grouping depends on. Pure, no I/O.

Offsets follow the PCI Local Bus and PCIe base specifications as the kernel names them in
include/uapi/linux/pci_regs.h. A non-root reader of sysfs `config` gets only the first 64 bytes, so
everything past the standard header (the capability list, PCIe type, ACS) is then unknown (None).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from vfiokit.model import Acs

PCI_STATUS_CAP_LIST = 0x10
PCI_CAPABILITY_LIST = 0x34
PCI_CB_CAPABILITY_LIST = 0x14
PCI_CAP_ID_EXP = 0x10
PCI_EXT_CAP_ID_ACS = 0x000D
PCI_CFG_SPACE_SIZE = 256

# Intel Sunrise Point PCH root ports implement ACS with CAP and CTRL as dwords at +4 and +8
# instead of words at +4 and +6 (drivers/pci/quirks.c pci_quirk_intel_spt_pch_acs_match).
# The one copy of these ids: `analyses.grouping` asks `is_spt_pch_root_port` too.
_SPT_PCH_ROOT_PORTS = (
    (0xA110, 0xA11F), (0xA167, 0xA16A), (0xA290, 0xA29F), (0xA2E7, 0xA2EE), (0x9D10, 0x9D1B),
)


def is_spt_pch_root_port(device_id: int) -> bool:
    """Whether an Intel (0x8086) device id is a Sunrise Point PCH root port."""
    return any(lo <= device_id <= hi for lo, hi in _SPT_PCH_ROOT_PORTS)


class ConfigFacts(NamedTuple):
    """What `decode` reads of one function's config space. A named tuple: the live reader decodes
    every function once, and a tuple is built in C (a quarter of a frozen dataclass's cost)."""

    vendor_id: int
    device_id: int
    class_code: int
    revision: int
    header_type: int
    multifunction: bool
    subsystem_vendor_id: int | None
    subsystem_device_id: int | None
    #: None when the capability list was not readable (config shorter than 256 bytes).
    is_pcie: bool | None
    pcie_type: int | None
    #: Whether the extended space (>= 0x100) was read, so `acs is None` means "no ACS capability".
    acs_known: bool
    acs: Acs | None
    secondary_bus: int | None


#: The standard header's fields that grouping reads, in one unpack: vendor (0x00), device (0x02),
#: status (0x06), revision and class code (the dword at 0x08), header type (0x0E).
_HEADER = struct.Struct("<HH2xHI2xB")
_TWO_WORDS = struct.Struct("<HH").unpack_from
_DWORD = struct.Struct("<I").unpack_from


def _word(cfg: bytes, off: int) -> int:
    """The word at `off`; what is there of it at the end of a short read (a capability near it)."""
    return int.from_bytes(cfg[off : off + 2], "little")


def _dword(cfg: bytes, off: int) -> int:
    return int.from_bytes(cfg[off : off + 4], "little")


def _find_pcie_cap(cfg: bytes, status: int, header_type: int) -> int | None:
    """Walk the standard capability list (pci_find_capability) for the PCIe capability."""
    if not status & PCI_STATUS_CAP_LIST:
        return None
    pos = cfg[PCI_CB_CAPABILITY_LIST if header_type == 2 else PCI_CAPABILITY_LIST] & ~3
    seen = 0
    while 0x40 <= pos < len(cfg) - 1 and seen < 48:  # 48 = the kernel's PCI_FIND_CAP_TTL
        if cfg[pos] == PCI_CAP_ID_EXP:
            return pos
        pos = cfg[pos + 1] & ~3
        seen += 1
    return None


def _find_ext_cap(cfg: bytes, cap_id: int) -> int | None:
    """Walk the extended capability list from 0x100 (pci_find_ext_capability)."""
    pos, seen = PCI_CFG_SPACE_SIZE, 0
    while pos >= PCI_CFG_SPACE_SIZE and pos + 4 <= len(cfg) and seen < 480:
        header = _DWORD(cfg, pos)[0]
        if header == 0 or header == 0xFFFFFFFF:
            return None
        if header & 0xFFFF == cap_id:
            return pos
        pos = (header >> 20) & 0xFFC
        seen += 1
    return None


def decode(cfg: bytes) -> ConfigFacts | None:
    """Decode what `cfg` (the bytes of sysfs `config`) holds; None when under the 64-byte header."""
    if len(cfg) < 64:
        return None
    vendor, device, status, class_rev, header = _HEADER.unpack_from(cfg)
    htype = header & 0x7F
    sub_v = sub_d = None
    if htype == 0:
        sub_v, sub_d = _TWO_WORDS(cfg, 0x2C)
    elif htype == 2 and len(cfg) >= 0x44:
        sub_v, sub_d = _TWO_WORDS(cfg, 0x40)
    is_pcie = pcie_type = None
    if len(cfg) >= PCI_CFG_SPACE_SIZE:
        cap = _find_pcie_cap(cfg, status, htype)
        is_pcie = cap is not None
        if cap is not None:
            pcie_type = (_word(cfg, cap + 2) >> 4) & 0xF
    acs_known = len(cfg) > PCI_CFG_SPACE_SIZE
    acs = None
    if acs_known:
        pos = _find_ext_cap(cfg, PCI_EXT_CAP_ID_ACS)
        if pos is not None:
            if vendor == 0x8086 and is_spt_pch_root_port(device):
                acs = Acs(cap=_dword(cfg, pos + 4), ctrl=_dword(cfg, pos + 8))
            else:
                acs = Acs(cap=_word(cfg, pos + 4), ctrl=_word(cfg, pos + 6))
    return ConfigFacts(
        vendor_id=vendor,
        device_id=device,
        class_code=class_rev >> 8,
        revision=class_rev & 0xFF,
        header_type=htype,
        multifunction=bool(header & 0x80),
        subsystem_vendor_id=sub_v,
        subsystem_device_id=sub_d,
        is_pcie=is_pcie,
        pcie_type=pcie_type,
        acs_known=acs_known,
        acs=acs,
        secondary_bus=cfg[0x19] if htype in (1, 2) else None,
    )
