"""What an ACS override would do to a host's IOMMU groups, and what isolation it only pretends.
Pure: Topology in, results out (no I/O, no printing).

- `simulate(top, override)`: today's groups beside the predicted ones, which groups split (or
  merge, going back from an override to the natural groups), per-device changes, and the natural
  groups the override cuts: devices that can still reach each other's memory by peer-to-peer DMA.
- `make_alone(top, address)`: the smallest override that gives a device a group of its own, or
  why none can.

`analyses/model_check.py` holds the prediction for the override the host booted with, against the
kernel's real groups.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations

from vfiokit.analyses.acs_override import (
    NONE,
    AcsOverride,
    OverrideSupport,
    effective_override,
    kernel_support,
)
from vfiokit.analyses.grouping import (
    GroupingState,
    KernelFacts,
    acs_ctrl,
    add_order,
    config_unknown,
    groups_of,
    override_applies,
    predict_partition,
)
from vfiokit.model import (
    PCI_TO_PCIE_BRIDGE,
    PCIE_TO_PCI_BRIDGE,
    PCIE_TYPE_NAMES,
    Device,
    Group,
    PciAddress,
    Topology,
)

Partition = dict[PciAddress, int]


@dataclass(frozen=True)
class DeviceChange:
    """How one device's group changes."""

    address: PciAddress
    current: int | None
    predicted: int | None
    #: Today's group-mates it would no longer share a group with.
    separated_from: tuple[PciAddress, ...]
    #: Devices it would newly share a group with (going back to the natural groups).
    joined_with: tuple[PciAddress, ...]
    alone_now: bool
    alone_then: bool


@dataclass(frozen=True)
class AssumedIsolation:
    """A group the hardware really forms (no override) that the override cuts into pieces. Its
    devices can still send each other peer-to-peer DMA that the IOMMU never sees."""

    devices: tuple[PciAddress, ...]
    pieces: tuple[Group, ...]
    #: Devices the override declares isolating, with the option that does it.
    because: tuple[tuple[PciAddress, str], ...]


@dataclass(frozen=True)
class Simulation:
    override: AcsOverride
    #: The override today's groups were formed with (from the command line, if the kernel honours it).
    baseline: AcsOverride
    support: OverrideSupport
    #: The kernel's groups now (None: the source has no IOMMU groups).
    current: tuple[Group, ...] | None
    predicted: tuple[Group, ...]
    #: Today's group number -> predicted groups it splits into (only groups that split).
    splits: tuple[tuple[int, tuple[Group, ...]], ...]
    #: Predicted group -> today's groups it joins (going back from an override).
    merges: tuple[tuple[Group, tuple[int, ...]], ...]
    changes: tuple[DeviceChange, ...]
    #: Hardware groups the asked override cuts.
    assumed: tuple[AssumedIsolation, ...]
    #: Hardware groups today's groups already cut (a host booted with an override).
    assumed_today: tuple[AssumedIsolation, ...]
    #: Config space beyond 64 bytes was unreadable for some device: only provable splits are shown.
    limited: bool
    notes: tuple[str, ...]
    #: Why the groups with the override cannot be predicted at all (no config space in the
    #: source); None when they can. When set, `predicted`, `splits` and `changes` say nothing.
    unknown: str | None = None


def _renumber(top: Topology, part: Partition) -> Partition:
    """Number blocks the kernel's way: by their first member in add order."""
    out: Partition = {}
    new_of: dict[int, int] = {}
    for dev in add_order(top):
        a = dev.address
        if a in part:
            out[a] = new_of.setdefault(part[a], len(new_of))
    return out


def _meet(top: Topology, a: Partition, b: Partition) -> Partition:
    """The common refinement of two partitions: devices share a group only if they do in both."""
    pairs: dict[tuple[int, int], int] = {}
    joined = {addr: pairs.setdefault((a[addr], b[addr]), len(pairs)) for addr in a if addr in b}
    return _renumber(top, joined)


def _real(top: Topology) -> Partition:
    return {a: g.number for g in top.groups or () for a in g.members if a in top.by_address}


def prediction_limited(top: Topology) -> bool:
    """Whether some device's config space was unreadable, so predictions rest on less."""
    return any(config_unknown(d) for d in top.devices)


def missing_config(top: Topology) -> tuple[str, str]:
    """Why PCIe types and ACS are unknown here, and what gives the full answer."""
    if all(d.config_size is None for d in top.devices if config_unknown(d)):
        return ("this source holds no config space (a pasted listing or an API inventory)",
                "a snapshot taken as root on the host gives the full answer")
    return "config space beyond 64 bytes was unreadable (not root)", "run as root for the full answer"


def prediction_unknown(top: Topology) -> str | None:
    """Why no group can be predicted from `top`: a source without any config space (a pasted
    listing, an API inventory) shows no PCIe type and no ACS, and the kernel decides groups from
    exactly those (pci_device_group -> pci_acs_path_enabled). None when some config space is there."""
    if top.devices and all(d.config_size is None for d in top.devices):
        why, fix = missing_config(top)
        return f"{why}; {fix}"
    return None


def partition_for(top: Topology, override: AcsOverride, baseline: AcsOverride | None = None,
                  facts: KernelFacts | None = None) -> tuple[Partition, tuple[int, ...]]:
    """The groups `top` gets with `override`, and the real groups kept whole.

    When the override covers the one the host booted with, it can only split today's groups, so
    the prediction is intersected with the real ones (without root, where unknown devices count
    as not isolating, only provable splits remain). A real group that the model of today's boot
    would itself split was joined for a reason config space does not show (a DMA alias the
    firmware declares): no override undoes that, so such a group is kept whole."""
    baseline = effective_override(top.host) if baseline is None else baseline
    part = predict_partition(top, override, facts)
    if not (top.groups and override.covers(baseline)):
        return part, ()
    real = _real(top)
    part = _meet(top, real, part)
    today = predict_partition(top, baseline, facts) if override != baseline else part
    kept: list[int] = []
    for g in top.groups:
        if len({today.get(a) for a in g.members}) > 1:
            kept.append(g.number)
            first = next((part[a] for a in g.members if a in part), None)
            for a in g.members:
                if a in part and first is not None:
                    part[a] = first
    return (_renumber(top, part) if kept else part), tuple(kept)


def _mates(part: Partition) -> dict[PciAddress, frozenset[PciAddress]]:
    members: dict[int, set[PciAddress]] = {}
    for a, n in part.items():
        members.setdefault(n, set()).add(a)
    return {a: frozenset(members[n]) for a, n in part.items()}


def _pieces(part_from: Partition, part_to: Partition, groups_to: tuple[Group, ...]) -> dict[int, list[Group]]:
    by_number = {g.number: g for g in groups_to}
    out: dict[int, list[Group]] = {}
    for a, n in sorted(part_from.items(), key=lambda kv: kv[1]):
        if a in part_to:
            g = by_number[part_to[a]]
            if g not in out.setdefault(n, []):
                out[n].append(g)
    return out


def simulate(top: Topology, override: AcsOverride) -> Simulation:
    facts = KernelFacts.of(top)
    baseline = effective_override(top.host)
    limited = prediction_limited(top)
    if (unknown := prediction_unknown(top)) is not None:
        # A partition here would come from devices counted as not isolating, not from the
        # hardware: nothing of it would be a prediction.
        return Simulation(override, baseline, kernel_support(top.host), top.groups, (), (), (), (), (), (),
                          limited, (), unknown)
    predicted_part, kept = partition_for(top, override, baseline, facts)
    predicted = groups_of(predicted_part)
    real = _real(top)
    current = top.groups
    # The hardware's own isolation: the real groups if the host booted without an override,
    # else the prediction without one.
    natural_part = real if (current and baseline.empty) else partition_for(top, NONE, baseline, facts)[0]
    notes: list[str] = []
    if kept and not limited:  # when limited, unknown config explains it: said below
        notes.append(f"kernel group(s) {', '.join(map(str, kept))} hold devices that vfiokit's model would "
                     "separate (a DMA alias the firmware declares, or a quirk vfiokit lacks): kept whole, "
                     "as no override separates what ACS did not join")
    if limited:
        why, fix = missing_config(top)
        if override.covers(baseline):
            notes.append(f"{why}: the prediction starts from the kernel's groups and only splits what the "
                         f"override provably splits; {fix}")
        else:
            notes.append(f"{why}: devices whose PCIe type and ACS are unknown count as not isolating, so "
                         f"groups may be shown larger than the kernel will make them; {fix}")

    changes: list[DeviceChange] = []
    splits: list[tuple[int, tuple[Group, ...]]] = []
    merges: list[tuple[Group, tuple[int, ...]]] = []
    if current is not None:
        now, then = _mates(real), _mates(predicted_part)
        for a in sorted(set(now) | set(then)):
            n_m, t_m = now.get(a, frozenset({a})), then.get(a, frozenset({a}))
            if n_m != t_m or real.get(a) != predicted_part.get(a):
                changes.append(DeviceChange(a, real.get(a), predicted_part.get(a), tuple(sorted(n_m - t_m)),
                                            tuple(sorted(t_m - n_m)), len(n_m) == 1, len(t_m) == 1))
        for n, gs in _pieces(real, predicted_part, predicted).items():
            if len(gs) > 1:
                splits.append((n, tuple(gs)))
        for g in predicted:
            olds = tuple(sorted({real[a] for a in g.members if a in real}))
            if len(olds) > 1:
                merges.append((g, olds))

    assumed = _assumed(top, natural_part, predicted_part, predicted, override)
    assumed_today = (_assumed(top, natural_part, real, current, baseline)
                     if current is not None and not baseline.empty else ())
    return Simulation(override, baseline, kernel_support(top.host), current, predicted, tuple(splits),
                      tuple(merges), tuple(changes), assumed, assumed_today, limited, tuple(notes))


def _assumed(top: Topology, natural: Partition, part: Partition, groups: tuple[Group, ...],
             override: AcsOverride) -> tuple[AssumedIsolation, ...]:
    """The hardware groups `part` cuts into pieces, and the devices the override declares isolating."""
    out = []
    natural_groups = {g.number: g for g in groups_of(natural)}
    for n, gs in _pieces(natural, part, groups).items():
        if len(gs) > 1:
            members = natural_groups[n].members
            because = tuple((a, why) for a in members
                            if (why := override_applies(top.by_address[a], override)) is not None)
            out.append(AssumedIsolation(members, tuple(gs), because))
    return tuple(out)


def with_groups(top: Topology, groups: tuple[Group, ...]) -> Topology:
    """`top` as it would look with `groups` (for judging a passthrough under predicted groups)."""
    number = {a: g.number for g in groups for a in g.members}
    devices = tuple(replace(d, iommu_group=number.get(d.address)) for d in top.devices)
    return replace(top, devices=devices, groups=groups)


# --- "what would make this device alone" ---------------------------------------------------------

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
    anywhere on the host, `id:` preferred to the broad options on a tie."""
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
    now = _mates(natural)
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
            then = _mates(full)
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
