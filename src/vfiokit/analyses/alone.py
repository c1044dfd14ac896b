"""`simulate --alone`: the smallest `pcie_acs_override=` that gives a device (or a whole card) an
IOMMU group of its own, judged on the whole host's prediction, or why none can. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations

from vfiokit.analyses.acs_override import (
    NONE,
    AcsOverride,
)
from vfiokit.analyses.grouping import (
    GroupingState,
    KernelFacts,
    acs_ctrl,
    config_unknown,
    override_applies,
    predict_partition,
)
from vfiokit.analyses.simulation import Partition, mates_of, missing_config, partition_for
from vfiokit.model import (
    PCI_TO_PCIE_BRIDGE,
    PCIE_TO_PCI_BRIDGE,
    PCIE_TYPE_NAMES,
    Device,
    PciAddress,
    Topology,
)


@dataclass(frozen=True)
class AloneAdvice:
    address: PciAddress
    #: Alone already without any override.
    already_alone: bool
    #: The smallest override that isolates it; None when none can (see `blockers`).
    override: AcsOverride | None
    #: Devices anywhere on the host whose group changes with that override (the collateral),
    #: besides the targets: an `id:` override of a port id splits every group below such ports.
    also_affected: tuple[PciAddress, ...]
    #: Why no override can isolate it (when `override` is None), or what limits the answer.
    blockers: tuple[str, ...]
    #: Its group-mates without any override: the devices that can still reach it by peer-to-peer
    #: DMA whatever override isolates it.
    dma_peers: tuple[PciAddress, ...] = ()
    #: False when the answer could not be worked out (config space unreadable).
    known: bool = True
    #: Every function asked for (a slot `01:00` gives all of its functions); `address` is the first.
    targets: tuple[PciAddress, ...] = ()
    #: Other functions of the targets' own card that the override separates from them (Proxmox
    #: passes a card's functions together: the answer says so, and asking for the slot avoids it).
    splits_card: tuple[PciAddress, ...] = ()


_FULL = "all of downstream, multifunction and the ids around it"


def _candidates_atoms(devices: list[Device]) -> list[AcsOverride]:
    atoms = [AcsOverride(downstream=True), AcsOverride(multifunction=True)]
    seen = set()
    for d in devices:
        key = (d.vendor_id, d.device_id)
        if None in key or key in seen:
            continue
        probe = AcsOverride(ids=(key,))  # type: ignore[arg-type]
        if override_applies(d, probe):
            seen.add(key)
            atoms.append(probe)
    return atoms


def _combine(parts: tuple[AcsOverride, ...]) -> AcsOverride:
    out = NONE
    for p in parts:
        out = out.union(p)
    return out


def _shares(part: Partition, targets: tuple[PciAddress, ...], others: list[Device]) -> list[Device]:
    """The devices of `others` that share a group with any target in `part`."""
    theirs = {part[t] for t in targets if t in part}
    return [o for o in others if part.get(o.address) in theirs]


def make_alone(top: Topology, address: PciAddress | tuple[PciAddress, ...], max_options: int = 4) -> AloneAdvice:
    """The smallest `pcie_acs_override=` that leaves `address` (one function, or every function of a
    card) with no other device in its group: fewest options, then fewest other devices affected
    anywhere on the host, `id:` preferred to the broad options on a tie.

    It stays whole because the search is one loop: each candidate is tried on the target's
    subtree first (cheap), then on the whole host, and the best is kept as it goes."""
    targets = (address,) if isinstance(address, PciAddress) else tuple(address)
    first = targets[0]
    for t in targets:
        top.device(t)
    facts = KernelFacts.of(top)
    natural = partition_for(top, NONE, None, facts)[0]
    blank = AloneAdvice(first, False, None, (), (), targets=targets)
    if unknown_group := [t for t in targets if t in top.group_unknown]:
        return replace(blank, blockers=(f"{top.source or 'the source'} shows {unknown_group[0].short} outside "
                                        "any group: its group is unknown",))
    if no_group := [t for t in targets if t not in natural]:
        return replace(blank, blockers=(f"the kernel gives {no_group[0].short} no IOMMU group at all (an AMD "
                                        "IOMMU leaves its own function and a few others out)",))
    others = [d for d in top.devices if d.address not in targets]
    mates = _shares(natural, targets, others)
    if not mates:
        return replace(blank, already_alone=True, override=NONE)
    peers = tuple(sorted(m.address for m in mates))
    involved = {d.address: d for d in (*(top.by_address[t] for t in targets), *mates)}
    for d in list(involved.values()):
        for anc in top.ancestors(d.address):
            involved.setdefault(anc.address, anc)
    unknown = [str(a) for a, d in involved.items() if config_unknown(d)]
    if unknown:
        why, fix = missing_config(top)
        return replace(blank, blockers=(
            f"PCIe type and ACS of {', '.join(unknown[:4])}{' ...' if len(unknown) > 4 else ''} are unknown "
            f"({why}): whether an override applies cannot be told; {fix}",), dma_peers=peers, known=False)
    # Whether the targets end up alone depends only on their natural group and the bridges above
    # it (an override only splits): tried on that part. What else the override changes is not:
    # an `id:` names every port with that id, so each candidate is predicted for the whole host
    # and compared group by group with the groups without it.
    sub = replace(top, devices=tuple(d for d in top.devices if d.address in involved))
    sub_mates = [d for d in mates if d.address in involved]
    now = mates_of(natural)
    atoms = _candidates_atoms(list(involved.values()))
    best: tuple[tuple[int, int, str], AcsOverride, tuple[PciAddress, ...], Partition] | None = None
    for k in range(1, min(max_options, len(atoms)) + 1):
        for combo in combinations(atoms, k):
            o = _combine(combo)
            if _shares(predict_partition(sub, o, facts), targets, sub_mates):
                continue
            full = partition_for(top, o, None, facts)[0]
            if _shares(full, targets, others):
                continue
            then = mates_of(full)
            affected = tuple(sorted(a for a in then if a not in targets and then[a] != now.get(a)))
            key = (len(affected), int(o.downstream) + int(o.multifunction), str(o))
            if best is None or key < best[0]:
                best = (key, o, affected, full)
        if best is not None:
            _, o, affected, full = best
            card = [m.address for m in mates if any(m.address.same_slot(t) for t in targets)]
            split = tuple(a for a in card if not any(full.get(a) == full.get(t) for t in targets))
            return AloneAdvice(first, False, o, affected, (), peers, targets=targets, splits_card=split)
    everything = _combine(tuple(atoms))
    part = predict_partition(sub, everything, facts)
    still = _shares(part, targets, sub_mates)
    target = next(top.by_address[t] for t in targets if any(part.get(s.address) == part.get(t) for s in still))
    still = [s for s in still if part.get(s.address) == part.get(target.address)]
    return replace(blank, blockers=_blockers(sub, everything, facts, target, still), dma_peers=peers)


def _device_words(d: Device) -> str:
    kind = PCIE_TYPE_NAMES.get(d.pcie_type, "PCIe device") if d.is_pcie else "conventional PCI device"
    return f"{d.address.short} ({d.ids or '?'}, {kind})"


def _why_not_isolating(d: Device, facts: KernelFacts, top: Topology) -> str:
    if d.acs is not None:
        ctrl = acs_ctrl(d, facts, top)
        later = "" if ctrl == d.acs.ctrl else (
            f" now, {ctrl:#06x} once the IOMMU is on and the kernel has set it")
        return (f"{_device_words(d)} has an ACS capability that does not enable SV, RR, CR and UF "
                f"(CAP {d.acs.cap:#06x}, CTRL {d.acs.ctrl:#06x}{later}); the override never touches a device "
                "with an ACS capability (check pci=disable_acs_redir= / pci=config_acs= on the command line)")
    if not d.is_pcie:
        return f"{_device_words(d)} is conventional PCI: a shared bus, which no override isolates"
    if d.vendor_id == 0x8086 and d.device_id is not None:
        from vfiokit.analyses.quirks import INTEL_PCH_ACS_IDS

        if d.device_id in INTEL_PCH_ACS_IDS:
            return (f"{_device_words(d)} is an Intel PCH root port whose kernel quirk (pci_quirk_intel_pch_acs) "
                    "says it does not isolate (the PCH's ACS could not be enabled); that quirk is checked "
                    "before the override")
    return f"{_device_words(d)} does not isolate, and no override option covers its type"


def _blockers(sub: Topology, override: AcsOverride, facts: KernelFacts, target: Device,
              still: list[Device]) -> tuple[str, ...]:
    m = GroupingState(sub, override, facts)
    out: list[str] = []
    for p in sub.ancestors(target.address):
        if not p.is_pcie or p.pcie_type in (PCIE_TO_PCI_BRIDGE, PCI_TO_PCIE_BRIDGE):
            out.append(f"it sits behind {_device_words(p)}: devices behind such a bridge all reach the IOMMU "
                       "with the bridge's requester ID, so the IOMMU cannot tell them apart")
            break
    for other in still:
        if m.are_dma_aliases(target, other):
            out.append(f"{target.address.short} and {other.address.short} are DMA aliases of each other "
                       "(a kernel quirk: one issues DMA with the other's requester ID)")
    if m.multifunction(target) and not m.acs_enabled(target) and any(o.address.same_slot(target.address)
                                                                       for o in still):
        out.append(_why_not_isolating(target, facts, sub))
    p = m.parent(target)
    while p is not None:
        if not m.acs_enabled(p):
            reason = _why_not_isolating(p, facts, sub)
            if reason not in out:
                out.append(reason)
        p = m.parent(p)
    return tuple(out) or (f"even with {_FULL} it shares a group with "
                          f"{', '.join(o.address.short for o in still)}",)
