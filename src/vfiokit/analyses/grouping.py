"""The kernel's IOMMU grouping of PCI devices, with or without an ACS override. Pure, no I/O.

`predict_groups(top, override)` replays what Linux 6.12 does at boot: every device is handed to
drivers/iommu/iommu.c `pci_device_group` in the order the PCI core adds devices (all functions of
a bus in devfn order, then each bridge's secondary bus, depth first: pci_scan_child_bus_extend /
pci_bus_add_devices), and group numbers are allocated in that order (iommu_group_alloc, ida).

The rules mirrored here, each named after its kernel function:
- `_acs_enabled` = drivers/pci/pci.c pci_acs_enabled, after the device-specific table
  (quirks.c pci_dev_specific_acs_enabled, data in `analyses.quirks`) with the override patch's
  `pcie_acs_overrides` entry in it;
- `_flags_enabled` = pci_acs_flags_enabled; `_path_ok` = pci_acs_path_enabled(dev, NULL, REQ);
- `PciTree.rid_bridges` = drivers/pci/search.c pci_for_each_dma_alias;
- `analyses/device_group.py`: iommu.c pci_device_group, get_pci_alias_group and
  get_pci_function_alias_group, the walk that picks a device's group.

Rules that change between kernel releases are keyed to the release in `KERNEL_RULES` (the lab's
6.1 and 7.3 kernels form the same groups on every capture, but set a port named by
pci=disable_acs_redir= differently); a kernel that forms groups below switches another way
adds an entry with its own `device_group`.

Port types are taken as the model holds them, already corrected like probe.c set_pcie_port_type.
(Between commit ca78410403dd and its fix, discussed on linux-pci in November 2024, the kernel wrote
the corrected type into the wrong bits of the PCIe flags, so a mislabelled "upstream" port below an
upstream port read as an endpoint, which isolates: a difference a real kernel of that range shows.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vfiokit.analyses import quirks as q
from vfiokit.analyses.acs_override import NONE, AcsOverride, parse_override
from vfiokit.analyses.device_group import pci_device_group
from vfiokit.analyses.iommu_state import kernel_version
from vfiokit.analyses.pci_params import names_device, pci_option
from vfiokit.formats.pciconfig import is_spt_pch_root_port
from vfiokit.model import (
    PCI_TO_PCIE_BRIDGE,
    PCIE_DOWNSTREAM_PORT,
    PCIE_ENDPOINT,
    PCIE_LEGACY_ENDPOINT,
    PCIE_RC_EVENT_COLLECTOR,
    PCIE_RC_INTEGRATED_ENDPOINT,
    PCIE_ROOT_PORT,
    PCIE_TO_PCI_BRIDGE,
    PCIE_UPSTREAM_PORT,
    Device,
    Group,
    HostInfo,
    PciAddress,
    Topology,
)

__all__ = ["KERNEL_RULES", "AcsOverride", "KernelFacts", "KernelRules", "PciTree", "parse_override",
           "predict_groups", "predict_partition", "rules_for"]

_PORTS = (PCIE_ROOT_PORT, PCIE_DOWNSTREAM_PORT)
_MF_TYPES = (PCIE_ENDPOINT, PCIE_UPSTREAM_PORT, PCIE_LEGACY_ENDPOINT, PCIE_RC_INTEGRATED_ENDPOINT)
_DMA_ALIAS_VENDORS = frozenset(quirk.vendor for quirk in q.DMA_ALIAS_QUIRKS)


@dataclass(frozen=True)
class KernelRules:
    """The grouping rules of one range of kernel releases (an entry of KERNEL_RULES)."""

    since: tuple[int, int]  #: first release (major, minor) these rules hold for
    checked: str  #: which real kernels showed them (the QEMU lab's, python -m lab)
    #: pci_device_group: the group a device joins (None: a new one), given the model and the
    #: groups handed out so far. A kernel that forms groups below switches another way (the 2025
    #: "Fix incorrect iommu_groups with PCIe ACS" series) gets its own function here.
    device_group: Callable[[GroupingState, Device, dict[PciAddress, int]], int | None] = field(repr=False)
    #: pci_enable_acs ends with pci_disable_acs_redir (4.19, "PCI: Add 'pci=disable_acs_redir='
    #: parameter"): the named ports lose Request/Completion Redirect after the kernel enabled them.
    disable_acs_redir: bool = True
    #: Since 6.11 ("PCI: Extend ACS configurability", __pci_config_acs) a port that
    #: pci=disable_acs_redir= names gets the firmware's control value less RR|CR|EC, dropping what
    #: pci_std_enable_acs turned on (the lab: CTRL 0x11 under 6.1, 0x00 under 7.3).
    acs_redir_from_firmware: bool = False


@dataclass(frozen=True)
class KernelFacts:
    """Facts outside config space that some rules depend on."""

    #: The kernel enables ACS itself (pci_std_enable_acs, asked by the IOMMU driver through
    #: pci_request_acs): CTRL |= CAP & (SV|RR|CR|UF). False for a host booted without an IOMMU,
    #: whose CTRL registers still hold the firmware's values.
    iommu_on: bool = True
    #: The ACPI IVRS table exists (an AMD IOMMU): pci_quirk_amd_sb_acs applies, and the IOMMU's
    #: own function is in no group.
    amd_iommu: bool = False
    #: pci_quirk_enable_intel_pch_acs succeeded (RCBA enabled): quirked PCH root ports isolate.
    intel_pch_acs: bool = True
    #: The running kernel's release (major, minor), None when unknown (then the newest rules).
    release: tuple[int, int] | None = None
    #: `pci=disable_acs_redir=` devices (pci_dev_str_match syntax), None when not given.
    acs_redir_off: str | None = None

    @property
    def rules(self) -> KernelRules:
        return rules_for(self.release)

    @classmethod
    def of(cls, top: Topology) -> KernelFacts:
        host: HostInfo = top.host
        units = host.iommu_units or ()
        amd = any(u.startswith("ivhd") for u in units) or (not units and host.cpu_vendor == "AuthenticAMD")
        failed = any("Failed to enable Intel PCH ACS quirk" in line for line in host.dmesg or ())
        return cls(iommu_on=top.groups is not None, amd_iommu=amd, intel_pch_acs=not failed,
                   release=kernel_version(host.kernel_release),
                   acs_redir_off=pci_option(host.cmdline, "disable_acs_redir"))


def config_unknown(dev: Device) -> bool:
    """Without 256 bytes of config space the PCIe type and ACS are unknown (a non-root reader
    sees 64). With exactly 256 the kernel itself has no extended space, so no ACS: known."""
    size = dev.config_size
    return size is None or size < 256


def _quirk_opinion(quirk: q.AcsQuirk, dev: Device, facts: KernelFacts, ctrl_flags_ok: bool) -> bool | None:
    """One pci_dev_acs_enabled[] function for REQ_ACS_FLAGS: True, False, or None (-ENOTTY)."""
    kind = quirk.kind
    if kind == "isolated":
        return True
    if kind == "amd_sb":
        # Targets multifunction devices on the southbridge, which sits on a root bus.
        return True if (dev.multifunction and dev.parent is None and facts.amd_iommu) else None
    ptype = dev.pcie_type if dev.is_pcie else None
    if kind == "rciep":
        return True if ptype == PCIE_RC_INTEGRATED_ENDPOINT else None
    if kind == "intel_pch":
        return facts.intel_pch_acs if ptype == PCIE_ROOT_PORT else None
    if kind == "intel_spt_pch":
        spt = (ptype == PCIE_ROOT_PORT and dev.device_id is not None
               and is_spt_pch_root_port(dev.device_id))
        return ctrl_flags_ok if spt and dev.acs is not None else None
    if kind in ("cavium", "al"):
        return True if ptype == PCIE_ROOT_PORT else None
    if kind == "ports_listed":
        if ptype not in _PORTS:
            return None
        return dev.device_id in quirk.devices  # type: ignore[operator]
    if kind == "listed_else_not":
        return dev.device_id in quirk.devices  # type: ignore[operator]
    raise AssertionError(f"unknown quirk kind {kind}")


def _matches(quirk: q.AcsQuirk, dev: Device) -> bool:
    # Entries with a device list only match listed ids, except the "any id" kinds whose function
    # itself filters (ports_listed / listed_else_not are PCI_ANY_ID entries in the kernel).
    if quirk.kind in ("ports_listed", "listed_else_not") or quirk.devices is None:
        return True
    return dev.device_id in quirk.devices


def override_applies(dev: Device, override: AcsOverride) -> str | None:
    """pcie_acs_overrides: why the override makes `dev` count as isolating ("id", "downstream",
    "multifunction"), or None. Never for conventional PCI or a device with an ACS capability."""
    if override.empty or not dev.is_pcie or dev.acs is not None or config_unknown(dev):
        return None
    if (dev.vendor_id, dev.device_id) in override.ids:
        return "id"
    if dev.pcie_type in _PORTS and override.downstream:
        return "downstream"
    # dev->multifunction, which an SR-IOV virtual function never has (pci_iov_add_virtfn)
    if dev.pcie_type in _MF_TYPES and override.multifunction and dev.multifunction and dev.physfn is None:
        return "multifunction"
    return None


class PciTree:
    """What every prediction over one topology shares, whatever the override: the devices of each
    bus and slot, the DMA aliases quirks declare, and the order the PCI core adds devices. Built
    once when several overrides are tried on one host (`simulate`, `--alone`)."""

    def __init__(self, top: Topology) -> None:
        self.top = top
        self.by_addr = top.by_address
        self.bus: dict[tuple[int, int], list[Device]] = {}
        self.slot: dict[tuple[int, int, int], list[Device]] = {}
        self.alias_mask: dict[PciAddress, frozenset[int]] = {}
        for d in top.devices:
            a = d.address
            self.bus.setdefault((a.domain, a.bus), []).append(d)
            self.slot.setdefault((a.domain, a.bus, a.slot), []).append(d)
            if d.vendor_id in _DMA_ALIAS_VENDORS and (mask := _dma_alias_mask(d)):
                self.alias_mask[a] = mask
        self.buses_with_aliases = {(a.domain, a.bus) for a in self.alias_mask}
        self.order = add_order(top)
        self._rid_bridges: dict[PciAddress, tuple[Device, ...]] = {}

    def rid_bridges(self, dev: Device) -> tuple[Device, ...]:
        """The bridges above `dev` that take over its requester ID, nearest first: what
        pci_for_each_dma_alias visits after the device itself. PCIe-to-PCI (type 7), PCI-to-PCIe
        (type 8) and conventional bridges; PCIe ports pass IDs through. A bridge whose type is
        unknown counts as taking it over (a lower bound)."""
        found = self._rid_bridges.get(dev.address)
        if found is None:
            p = self.by_addr.get(dev.parent) if dev.parent is not None else None
            if p is None:
                found = ()
            else:
                above = self.rid_bridges(p)
                takes_over = (config_unknown(p) or not p.is_pcie
                              or p.pcie_type in (PCIE_TO_PCI_BRIDGE, PCI_TO_PCIE_BRIDGE))
                found = (p, *above) if takes_over else above
            self._rid_bridges[dev.address] = found
        return found


class GroupingState:
    """One prediction's working state over a topology (`tree`: its PciTree, if already built)."""

    def __init__(self, top: Topology, override: AcsOverride, facts: KernelFacts, tree: PciTree | None = None) -> None:
        if tree is None:
            tree = PciTree(top)
        elif tree.top is not top:
            raise ValueError("the PciTree given is another topology's")
        self.top = top
        self.override = override
        self.facts = facts
        self.tree = tree
        self._acs: dict[PciAddress, bool] = {}
        self._path: dict[PciAddress, bool] = {}

    def parent(self, dev: Device) -> Device | None:
        return self.tree.by_addr.get(dev.parent)  # on a root bus, parent None: no device has that key

    def multifunction(self, dev: Device) -> bool:
        # SR-IOV virtual functions are never multifunction (pci_iov_add_virtfn); for the others
        # the model holds header bit 7, set for functions > 0 too (pci_scan_slot).
        return bool(dev.multifunction) and dev.physfn is None

    def _flags_enabled(self, dev: Device) -> bool:
        """pci_acs_flags_enabled(dev, REQ_ACS_FLAGS): flags the port cannot do count as on."""
        if dev.acs is None:
            return False
        ctrl = acs_ctrl(dev, self.facts, self.top)
        wanted = q.REQ_ACS_FLAGS & (dev.acs.cap | q.ACS_EC)
        return ctrl & wanted == wanted

    def acs_enabled(self, dev: Device) -> bool:
        """pci_acs_enabled(dev, REQ_ACS_FLAGS). Unknown config space counts as not isolating (a
        lower bound: it can only merge more than the kernel does)."""
        a = dev.address
        enabled = self._acs.get(a)
        if enabled is None:
            enabled = self._acs[a] = self._compute_acs(dev)
        return enabled

    def _compute_acs(self, dev: Device) -> bool:
        if config_unknown(dev):
            return False
        flags_ok = self._flags_enabled(dev)
        overridden = override_applies(dev, self.override) is not None
        for i, quirk in q.acs_quirks_for(dev.vendor_id):
            if i > q.OVERRIDE_AFTER and overridden:
                return True  # the patch's entry sits right after OVERRIDE_AFTER
            if _matches(quirk, dev):
                opinion = _quirk_opinion(quirk, dev, self.facts, flags_ok)
                if opinion is not None:
                    return opinion
        if overridden:
            return True
        if not dev.is_pcie:
            return False  # conventional PCI/PCI-X: a shared bus
        t = dev.pcie_type
        if t in (PCI_TO_PCIE_BRIDGE, PCIE_TO_PCI_BRIDGE, PCIE_RC_EVENT_COLLECTOR):
            return False
        if t in _PORTS:
            return flags_ok
        if t in _MF_TYPES:
            return flags_ok if self.multifunction(dev) else True
        return True

    def path_ok(self, dev: Device) -> bool:
        """pci_acs_path_enabled(dev, NULL, REQ_ACS_FLAGS): dev and every bridge above it."""
        a = dev.address
        ok = self._path.get(a)
        if ok is None:
            parent = self.parent(dev)
            ok = self._path[a] = self.acs_enabled(dev) and (parent is None or self.path_ok(parent))
        return ok

    def are_dma_aliases(self, a: Device, b: Device) -> bool:
        """pci_devs_are_dma_aliases: one's alias mask holds the other's devfn (same bus)."""
        masks = self.tree.alias_mask
        return b.address.devfn in masks.get(a.address, ()) or a.address.devfn in masks.get(b.address, ())


def acs_ctrl(dev: Device, facts: KernelFacts, top: Topology) -> int:
    """The ACS control register `dev` will have with the IOMMU on (0 without ACS): as read when it
    was on; on a host booted without it, what pci_enable_acs will write: pci_std_enable_acs turns
    SV|RR|CR|UF on, then pci_disable_acs_redir clears RR|CR|EC again on the ports
    `pci=disable_acs_redir=` names."""
    if dev.acs is None:
        return 0
    ctrl = dev.acs.ctrl
    if not facts.iommu_on:
        rules, redir = facts.rules, facts.acs_redir_off
        named = bool(redir) and rules.disable_acs_redir and names_device(redir or "", dev, top)
        if not (named and rules.acs_redir_from_firmware):
            ctrl |= dev.acs.cap & q.REQ_ACS_FLAGS
        if named:
            ctrl &= ~(q.ACS_RR | q.ACS_CR | q.ACS_EC)
    return ctrl


def _dma_alias_mask(dev: Device) -> frozenset[int]:
    """Devfns `dev` also issues DMA as (quirks.c pci_add_dma_alias callers)."""
    out: set[int] = set()
    for quirk in q.DMA_ALIAS_QUIRKS:
        if dev.vendor_id != quirk.vendor or dev.device_id not in quirk.devices:
            continue
        fn = dev.address.function
        if quirk.kind == "func0" and fn != 0:
            out.add(q.devfn(dev.address.slot, 0))
        elif quirk.kind == "func1" and fn != 1:
            out.add(q.devfn(dev.address.slot, 1))
        elif quirk.kind == "fixed":
            if (dev.subsystem_vendor_id, dev.subsystem_device_id) in (quirk.subsystems or ()):
                out.update(quirk.devfns)
        elif quirk.kind == "devfns":
            out.update(quirk.devfns)
    return frozenset(out)


def add_order(top: Topology) -> list[Device]:
    """The order the PCI core adds devices: a bus's functions in devfn order, then each bridge's
    secondary bus, depth first (pci_bus_add_devices). SR-IOV virtual functions are created later,
    when sriov_numvfs is written, so they come last."""
    vfs = [d for d in top.devices if d.physfn is not None]
    out: list[Device] = []
    roots = [d for d in top.devices
             if d.physfn is None and (d.parent is None or d.parent not in top.by_address)]
    by_bus: dict[tuple[int, int], list[Device]] = {}
    for d in roots:
        by_bus.setdefault((d.address.domain, d.address.bus), []).append(d)
    stack: list[list[Device]] = [by_bus[k] for k in sorted(by_bus, reverse=True)]
    while stack:
        level = stack.pop()
        out.extend(level)
        for bridge in reversed(level):
            kids = [c for c in top.children(bridge.address) if c.physfn is None]
            if kids:
                stack.append(kids)
    return out + vfs


def predict_partition(top: Topology, override: AcsOverride | None,
                      facts: KernelFacts | None = None, tree: PciTree | None = None) -> dict[PciAddress, int]:
    """Group number of every device the kernel would group, keyed by address."""
    model = GroupingState(top, override or NONE, facts or KernelFacts.of(top), tree)
    # AMD IOMMUs leave some functions out (the IOMMU's own function, devices the IVRS table does
    # not cover, e.g. 00:00.0 on many boards): a device the running kernel left without a group,
    # while others have one, stays without a group here, and takes no group number.
    grouped_any = any(d.iommu_group is not None for d in top.devices)
    skip = {d.address for d in top.devices
            if (grouped_any and d.iommu_group is None) or (model.facts.amd_iommu and is_amd_iommu(d))}
    device_group = model.facts.rules.device_group
    group_of: dict[PciAddress, int] = {}
    next_id = 0
    for dev in model.tree.order:
        if skip and dev.address in skip:
            continue
        found = device_group(model, dev, group_of)
        if found is None:
            found, next_id = next_id, next_id + 1
        group_of[dev.address] = found
    return group_of


def is_amd_iommu(dev: Device) -> bool:
    """An AMD IOMMU's own PCI function (class 0806, "IOMMU"): drivers/iommu/amd/init.c
    init_iommu_one clears its entry of the rlookup table ("Make sure IOMMU is not considered to
    translate itself"), so amd_iommu_probe_device refuses it and it never gets a group, which on
    a host booted with amd_iommu=off matters for every later group's number."""
    return dev.vendor_id == 0x1022 and dev.class_id == 0x0806


#: The grouping rules by kernel release, oldest first; `rules_for` takes the last entry whose
#: `since` is not newer than the release. A kernel that changes a rule adds an entry here.
KERNEL_RULES: tuple[KernelRules, ...] = (
    KernelRules((0, 0), "none", pci_device_group, disable_acs_redir=False),
    KernelRules((4, 19), "Debian's 6.1.0-50 (python -m lab): every capture, numbers included", pci_device_group),
    KernelRules((6, 11), "Debian's 7.3.4+deb13 (python -m lab): every capture, numbers included", pci_device_group,
                acs_redir_from_firmware=True),
)


def rules_for(release: tuple[int, int] | None) -> KernelRules:
    """The rules of `release` (major, minor); the newest when the release is unknown."""
    if release is None:
        return KERNEL_RULES[-1]
    return [r for r in KERNEL_RULES if r.since <= release][-1]


def groups_of(partition: dict[PciAddress, int]) -> tuple[Group, ...]:
    """The groups of a partition, by number, each with its members in address order."""
    members: dict[int, list[PciAddress]] = {}
    # One sort of every address (nearly sorted already: linear), not one per group.
    for addr in sorted(partition):
        members.setdefault(partition[addr], []).append(addr)
    return tuple(Group(n, tuple(members[n])) for n in sorted(members))


def predict_groups(top: Topology, override: AcsOverride | None) -> tuple[Group, ...]:
    """The IOMMU groups the kernel would form for `top` booted with `override` (None or "none":
    without), numbered as the kernel numbers them. Devices whose config space could not be read
    count as not isolating, so groups are then at least as large as the kernel's."""
    return groups_of(predict_partition(top, override))
