"""The kernel's device-specific rules for IOMMU grouping, as data. Pure, no I/O.

Two tables from drivers/pci/quirks.c (Linux 6.12) and one patch:

- `ACS_QUIRKS`: `pci_dev_acs_enabled[]`, walked in order by `pci_dev_specific_acs_enabled`; the
  first entry with an opinion (not -ENOTTY) decides whether a device isolates, before the generic
  rule in drivers/pci/pci.c `pci_acs_enabled`. The ACS override patch (`pcie_acs_overrides`, carried
  by Proxmox in pve-kernel patches/kernel/*-pci-Enable-overrides-for-missing-ACS-capabilities-*.patch)
  adds one `PCI_ANY_ID` entry right after the APM X-Gene (AMCC) entry: `OVERRIDE_AFTER`.
- `DMA_ALIAS_QUIRKS`: the DECLARE_PCI_FIXUP_HEADER hooks that call `pci_add_dma_alias`: a function
  that issues DMA with another function's requester ID shares that function's group.

`quirk_use_pcie_bridge_dma_alias` (ASMedia 1b21:1080 and other conventional bridges) only changes the
requester ID a conventional bridge forwards, not which device `pci_for_each_dma_alias` reports, so
they never change a group and are not listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

# ACS capability/control bits (include/uapi/linux/pci_regs.h).
ACS_SV = 0x01  # Source Validation
ACS_TB = 0x02  # Translation Blocking
ACS_RR = 0x04  # P2P Request Redirect
ACS_CR = 0x08  # P2P Completion Redirect
ACS_UF = 0x10  # Upstream Forwarding
ACS_EC = 0x20  # P2P Egress Control
ACS_DT = 0x40  # Direct Translated P2P
#: drivers/iommu/iommu.c REQ_ACS_FLAGS: what a point must do for the IOMMU to see every request.
REQ_ACS_FLAGS = ACS_SV | ACS_RR | ACS_CR | ACS_UF

@dataclass(frozen=True)
class AcsQuirk:
    """One `pci_dev_acs_enabled[]` entry: vendor (None = PCI_ANY_ID), devices (None = any) and the
    kind of function, named after the kernel function it mirrors (see `analyses.grouping`)."""

    vendor: int | None
    devices: frozenset[int] | None
    #: "amd_sb": pci_quirk_amd_sb_acs (isolated when multifunction on a root bus with an AMD
    #:     IOMMU (ACPI IVRS table); RR|CR are all a multifunction device can claim there).
    #: "isolated": a quirk that answers yes for every request (pci_quirk_mf_endpoint_acs,
    #:     pci_quirk_qcom_rp_acs, pci_quirk_xgene_acs, pci_quirk_brcm_acs, pci_quirk_nxp_rp_acs,
    #:     pci_quirk_loongson_acs: they mask SV|RR|CR|UF, so REQ_ACS_FLAGS always pass).
    #: "rciep": pci_quirk_rciep_acs (isolated if a root complex integrated endpoint, else no opinion).
    #: "intel_pch": pci_quirk_intel_pch_acs (root ports in `devices`: isolated only when the kernel
    #:     enabled the PCH's ACS-like controls, PCI_DEV_FLAGS_ACS_ENABLED_QUIRK; else NOT isolated).
    #: "intel_spt_pch": pci_quirk_intel_spt_pch_acs (root ports with ACS at a dword layout: the
    #:     usual flag test; pciconfig already decodes that layout).
    #: "cavium": pci_quirk_cavium_acs (root ports in `devices` isolated).
    #: "al": pci_quirk_al_acs (root ports isolated, others no opinion).
    #: "ports_listed": pci_quirk_zhaoxin_pcie_ports_acs (root/downstream ports: listed ones
    #:     isolated, other ports NOT isolated; non-ports no opinion).
    #: "listed_else_not": pci_quirk_wangxun_nic_acs (listed isolated, any other id of the vendor
    #:     NOT isolated).
    kind: str
    cite: str


def _ids(*items: int | tuple[int, int]) -> frozenset[int]:
    """Device ids from single values and inclusive (first, last) ranges."""
    out: set[int] = set()
    for it in items:
        if isinstance(it, tuple):
            out.update(range(it[0], it[1] + 1))
        else:
            out.add(it)
    return frozenset(out)


_MF = "pci_quirk_mf_endpoint_acs"
_INTEL_MF = _ids(
    0x10C6, 0x10DB, 0x10DD, 0x10E1, 0x10F1, 0x10F7, 0x10F8, 0x10F9, 0x10FA, 0x10FB, 0x10FC,
    0x1507, 0x1514, 0x151C, 0x1529, 0x152A, 0x154D, 0x154F, 0x1551, 0x1558,
    0x1509, 0x150E, 0x150F, 0x1510, 0x1511, 0x1516, 0x1527,  # 82580
    0x10C9, 0x10E6, 0x10E7, 0x10E8, 0x150A, 0x150D, 0x1518, 0x1526,  # 82576
    0x10A7, 0x10A9, 0x10D6,  # 82575
    (0x1521, 0x1524),  # I350
    0x105E, 0x105F, 0x1060, 0x10D9,  # 82571
    0x15B7, 0x15B8,  # I219
)
#: pci_quirk_intel_pch_acs_ids[]: Ibexpeak, Cougarpoint, Pantherpoint, Lynxpoint-H/LP, Wildcat,
#: Patsburg (even ids), Wellsburg, 9 series (even ids).
INTEL_PCH_ACS_IDS = _ids(
    (0x3B42, 0x3B51), (0x1C10, 0x1C1F), (0x1E10, 0x1E1F), (0x8C10, 0x8C1F), (0x9C10, 0x9C1B),
    (0x9C90, 0x9C9B), *range(0x1D10, 0x1D1F, 2), (0x8D10, 0x8D1E), *range(0x8C90, 0x8C9F, 2),
)

#: drivers/pci/quirks.c pci_dev_acs_enabled[] (6.12), in table order.
ACS_QUIRKS: tuple[AcsQuirk, ...] = (
    AcsQuirk(0x1002, _ids(0x4385, 0x439C, 0x4383, 0x439D, 0x4384, 0x4399), "amd_sb", "pci_quirk_amd_sb_acs"),
    AcsQuirk(0x1022, _ids(0x780F, 0x7809), "amd_sb", "pci_quirk_amd_sb_acs"),
    AcsQuirk(0x1924, _ids(0x0903, 0x0923, 0x0A03), "isolated", _MF),  # Solarflare
    AcsQuirk(0x8086, _INTEL_MF, "isolated", _MF),
    AcsQuirk(0x8086, None, "rciep", "pci_quirk_rciep_acs"),
    AcsQuirk(0x17CB, _ids(0x0400, 0x0401, 0x0115, 0x0111, 0x0120), "isolated", "pci_quirk_qcom_rp_acs"),
    AcsQuirk(0x1DBF, _ids(0x0401), "isolated", "pci_quirk_qcom_rp_acs"),  # HXT SD4800
    AcsQuirk(0x8086, INTEL_PCH_ACS_IDS, "intel_pch", "pci_quirk_intel_pch_acs"),
    AcsQuirk(0x8086, None, "intel_spt_pch", "pci_quirk_intel_spt_pch_acs"),
    AcsQuirk(0x19A2, _ids(0x0710), "isolated", _MF),  # Emulex BE3-R
    AcsQuirk(0x10DF, _ids(0x0720), "isolated", _MF),  # Emulex Skyhawk-R
    AcsQuirk(0x177D, _ids((0xA000, 0xA7FF), 0xAF84, 0xB884), "cavium", "pci_quirk_cavium_acs"),
    AcsQuirk(0x177D, _ids(0xA026, 0xA059, 0xA060), "isolated", _MF),  # Cavium multifunction
    AcsQuirk(0x10E8, _ids(0xE004), "isolated", "pci_quirk_xgene_acs"),  # APM X-Gene (AMCC)
    # <- the ACS override patch's entry goes here (OVERRIDE_AFTER)
    AcsQuirk(0x1DEF, _ids((0xE005, 0xE00C)), "isolated", "pci_quirk_xgene_acs"),  # Ampere
    AcsQuirk(0x14E4, _ids(0x16D7, 0x1750, 0x1751, 0x1752, 0x1760, 0x1761, 0x1762, 0x1763), "isolated", _MF),
    AcsQuirk(0x14E4, _ids(0xD714), "isolated", "pci_quirk_brcm_acs"),
    AcsQuirk(0x0014, _ids(0x3C09, 0x3C19, 0x3C29, *range(0x7A09, 0x7A6A, 0x10)), "isolated",
             "pci_quirk_loongson_acs"),
    AcsQuirk(0x1C36, _ids(0x0031), "al", "pci_quirk_al_acs"),  # Amazon Annapurna Labs
    AcsQuirk(0x1D17, _ids(0x3038, 0x3104, 0x9083), "isolated", _MF),  # Zhaoxin multifunction
    AcsQuirk(0x1957, _ids((0x8D80, 0x8D83), (0x8D88, 0x8D8B), (0x8D90, 0x8D93), (0x8D98, 0x8D9B),
                          0x8DA0, 0x8DA1, 0x8DA8, 0x8DA9, 0x8DB0, 0x8DB1, 0x8DB8, 0x8DB9),
             "isolated", "pci_quirk_nxp_rp_acs"),
    AcsQuirk(0x1D17, _ids((0x0710, 0x071E), 0x0721, (0x0723, 0x0752)), "ports_listed",
             "pci_quirk_zhaoxin_pcie_ports_acs"),
    AcsQuirk(0x8088, _ids((0x0100, 0x010F), 0x1001, 0x2001, 0x5010, 0x5025, 0x5040, 0x5110, 0x5125,
                          0x5140), "listed_else_not", "pci_quirk_wangxun_nic_acs"),
)
#: Index in ACS_QUIRKS after which the override patch inserts `pcie_acs_overrides`: Proxmox puts
#: it after `{ PCI_VENDOR_ID_AMCC, 0xE004, pci_quirk_xgene_acs }`, so every entry up to there
#: (the Intel PCH root ports among them) still wins over the override.
OVERRIDE_AFTER = next(i for i, q in enumerate(ACS_QUIRKS) if q.vendor == 0x10E8)


@dataclass(frozen=True)
class DmaAliasQuirk:
    """A `pci_add_dma_alias` fixup: devices matching (vendor, devices[, subsystem]) issue DMA with
    the requester IDs `aliases(function)` returns (devfns on the same bus)."""

    vendor: int
    devices: frozenset[int]
    #: "func0": quirk_dma_func0_alias (functions other than 0 alias function 0 of their slot).
    #: "func1": quirk_dma_func1_alias (functions other than 1 alias function 1 of their slot).
    #: "fixed": quirk_fixed_dma_alias (alias to `devfns`, only with a listed subsystem).
    #: "devfns": a fixed list of devfns whatever the function (quirk_mic_x200_dma_alias,
    #:     quirk_pex_vca_alias).
    kind: str
    cite: str
    subsystems: frozenset[tuple[int, int]] | None = None
    devfns: tuple[int, ...] = ()


def devfn(slot: int, function: int) -> int:
    return (slot << 3) | function


_F1 = "quirk_dma_func1_alias"
DMA_ALIAS_QUIRKS: tuple[DmaAliasQuirk, ...] = (
    DmaAliasQuirk(0x1180, _ids(0xE832, 0xE476), "func0", "quirk_dma_func0_alias"),  # Ricoh
    DmaAliasQuirk(0x6766, _ids(0x3D40, 0x3D41), "func0", "quirk_dma_func0_alias"),  # Glenfly
    DmaAliasQuirk(0x1B4B, _ids(0x9120, 0x9123, 0x9125, 0x9128, 0x9130, 0x9170, 0x9172, 0x917A, 0x9182,
                               0x9183, 0x91A0, 0x9215, 0x9220, 0x9230, 0x9235), "func1", _F1),  # Marvell
    DmaAliasQuirk(0x1103, _ids(0x0642, 0x0645), "func1", _F1),  # HighPoint (TTI)
    DmaAliasQuirk(0x197B, _ids(0x2392), "func1", _F1),  # JMicron JMB388 ESD
    DmaAliasQuirk(0x1C28, _ids(0x0122), "func1", _F1),  # Lite-On
    DmaAliasQuirk(0x9005, _ids(0x0285), "fixed", "quirk_fixed_dma_alias",
                  subsystems=frozenset({(0x9005, 0x02BB), (0x9005, 0x02BC)}), devfns=(devfn(1, 0),)),
    DmaAliasQuirk(0x8086, _ids(0x2260, 0x2264), "devfns", "quirk_mic_x200_dma_alias",
                  devfns=(devfn(0x10, 0), devfn(0x11, 0), devfn(0x12, 3))),
    DmaAliasQuirk(0x8086, _ids((0x2954, 0x2956), 0x2958, 0x2959, 0x295A), "devfns", "quirk_pex_vca_alias",
                  devfns=tuple(devfn(s, f) for s in range(0x20) for f in range(5))),
)


@cache  # asked once per device: a 50,000-function host has a handful of vendors
def acs_quirks_for(vendor: int | None) -> tuple[tuple[int, AcsQuirk], ...]:
    """Entries (with their table index) that can match `vendor`, in table order."""
    return tuple((i, q) for i, q in enumerate(ACS_QUIRKS) if q.vendor is None or q.vendor == vendor)
