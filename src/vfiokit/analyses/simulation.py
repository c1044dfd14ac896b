"""What an ACS override would do to a host's IOMMU groups, and what isolation it only pretends.
Pure: Topology in, results out (no I/O, no printing).

- `simulate(top, override)`: today's groups beside the predicted ones, which groups split (or
  merge, going back from an override to the natural groups), per-device changes, and the natural
  groups the override cuts: devices that can still reach each other's memory by peer-to-peer DMA.
- `make_alone(top, address)`: the smallest override that gives a device a group of its own, or
  why none can.
- `check_model(top)`: the prediction for the override the host booted with, against the kernel's
  real groups.
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


def _limited(top: Topology) -> bool:
    return any(config_unknown(d) for d in top.devices)


def missing_config(top: Topology) -> tuple[str, str]:
    """Why PCIe types and ACS are unknown here, and what gives the full answer."""
    if all(d.config_size is None for d in top.devices if config_unknown(d)):
        return ("this source holds no config space (a pasted listing or an API inventory)",
                "a snapshot taken as root on the host gives the full answer")
    return "config space beyond 64 bytes was unreadable (not root)", "run as root for the full answer"


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
    limited = _limited(top)
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
    #: Devices whose group changes with that override (the collateral), besides the device itself.
    also_affected: tuple[PciAddress, ...]
    #: Why no override can isolate it (when `override` is None), or what limits the answer.
    blockers: tuple[str, ...]
    #: Its group-mates without any override: the devices that can still reach it by peer-to-peer
    #: DMA whatever override isolates it.
    dma_peers: tuple[PciAddress, ...] = ()
    #: False when the answer could not be worked out (config space unreadable).
    known: bool = True


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


def make_alone(top: Topology, address: PciAddress, max_options: int = 4) -> AloneAdvice:
    """The smallest `pcie_acs_override=` that leaves `address` alone in its group: fewest options,
    then fewest other devices affected, `id:` preferred to the broad options on a tie."""
    target = top.device(address)
    facts = KernelFacts.of(top)
    natural = partition_for(top, NONE, None, facts)[0]
    if address in top.group_unknown:
        return AloneAdvice(address, False, None, (), (f"{top.source or 'the source'} shows it outside any "
                                                      "group: its group is unknown",))
    if address not in natural:
        return AloneAdvice(address, False, None, (), ("the kernel gives this device no IOMMU group at all "
                                                      "(an AMD IOMMU leaves its own function and a few "
                                                      "others out)",))
    mates = [top.by_address[a] for a, n in natural.items() if n == natural[address] and a != address]
    if not mates:
        return AloneAdvice(address, True, NONE, (), ())
    peers = tuple(sorted(m.address for m in mates))
    involved = {d.address: d for d in (target, *mates)}
    for d in list(involved.values()):
        for anc in top.ancestors(d.address):
            involved.setdefault(anc.address, anc)
    unknown = [str(a) for a, d in involved.items() if config_unknown(d)]
    if unknown:
        why, fix = missing_config(top)
        return AloneAdvice(address, False, None, (), (
            f"PCIe type and ACS of {', '.join(unknown[:4])}{' ...' if len(unknown) > 4 else ''} are unknown "
            f"({why}): whether an override applies cannot be told; {fix}",), peers, known=False)
    # Only the device's natural group and the bridges above it decide (an override only splits).
    sub = replace(top, devices=tuple(d for d in top.devices if d.address in involved))
    sub_natural = predict_partition(sub, NONE, facts)
    atoms = _candidates_atoms(list(involved.values()))
    best: tuple[tuple[int, int, str], AcsOverride, tuple[PciAddress, ...]] | None = None
    for k in range(1, min(max_options, len(atoms)) + 1):
        for combo in combinations(atoms, k):
            o = _combine(combo)
            part = predict_partition(sub, o, facts)
            if any(part.get(m.address) == part[address] for m in mates):
                continue
            now, then = _mates(sub_natural), _mates(part)
            affected = tuple(sorted(a for a in then if a != address and then[a] != now.get(a)))
            broad = int(o.downstream) + int(o.multifunction)
            key = (len(affected), broad, str(o))
            if best is None or key < best[0]:
                best = (key, o, affected)
        if best is not None:
            return AloneAdvice(address, False, best[1], best[2], (), peers)
    everything = _combine(tuple(atoms))
    part = predict_partition(sub, everything, facts)
    still = [m for m in mates if part.get(m.address) == part[address]]
    return AloneAdvice(address, False, None, (), _blockers(sub, everything, facts, target, still), peers)


def _describe(d: Device) -> str:
    kind = PCIE_TYPE_NAMES.get(d.pcie_type, "PCIe device") if d.is_pcie else "conventional PCI device"
    return f"{d.address.short} ({d.ids or '?'}, {kind})"


def _why_not_isolating(d: Device, facts: KernelFacts, top: Topology) -> str:
    if d.acs is not None:
        ctrl = acs_ctrl(d, facts, top)
        later = "" if ctrl == d.acs.ctrl else (
            f" now, {ctrl:#06x} once the IOMMU is on and the kernel has set it")
        return (f"{_describe(d)} has an ACS capability that does not enable SV, RR, CR and UF "
                f"(CAP {d.acs.cap:#06x}, CTRL {d.acs.ctrl:#06x}{later}); the override never touches a device "
                "with an ACS capability (check pci=disable_acs_redir= / pci=config_acs= on the command line)")
    if not d.is_pcie:
        return f"{_describe(d)} is conventional PCI: a shared bus, which no override isolates"
    if d.vendor_id == 0x8086 and d.device_id is not None:
        from vfiokit.analyses.quirks import INTEL_PCH_ACS_IDS

        if d.device_id in INTEL_PCH_ACS_IDS:
            return (f"{_describe(d)} is an Intel PCH root port whose kernel quirk (pci_quirk_intel_pch_acs) "
                    "says it does not isolate (the PCH's ACS could not be enabled); that quirk is checked "
                    "before the override")
    return f"{_describe(d)} does not isolate, and no override option covers its type"


def _blockers(sub: Topology, override: AcsOverride, facts: KernelFacts, target: Device,
              still: list[Device]) -> tuple[str, ...]:
    m = GroupingState(sub, override, facts)
    out: list[str] = []
    for p in sub.ancestors(target.address):
        if not p.is_pcie or p.pcie_type in (PCIE_TO_PCI_BRIDGE, PCI_TO_PCIE_BRIDGE):
            out.append(f"it sits behind {_describe(p)}: devices behind such a bridge all reach the IOMMU "
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


# --- the model against the live kernel -----------------------------------------------------------

@dataclass(frozen=True)
class ModelCheck:
    override: AcsOverride
    predicted: tuple[Group, ...]
    real: tuple[Group, ...]
    matches: bool
    #: One line per kernel group the prediction does not reproduce.
    differences: tuple[str, ...]
    limited: bool


def check_model(top: Topology) -> ModelCheck:
    """Predict the groups for the override the host booted with and compare them with the real
    ones, group for group, numbers included."""
    baseline = effective_override(top.host)
    part = predict_partition(top, baseline)
    predicted = groups_of(part)
    real = top.groups or ()
    real_sets = {g.members: g.number for g in real}
    pred_sets = {g.members: g.number for g in predicted}
    diffs: list[str] = []
    for g in real:
        short = " ".join(a.short for a in g.members)
        if g.members not in pred_sets:
            pieces = sorted({part[a] for a in g.members if a in part})
            diffs.append(f"kernel group {g.number} ({short}): predicted as "
                         + (", ".join(f"group {n}" for n in pieces) or "ungrouped"))
        elif pred_sets[g.members] != g.number:
            diffs.append(f"kernel group {g.number} ({short}): same devices, predicted number "
                         f"{pred_sets[g.members]}")
    for g in predicted:
        if g.members not in real_sets and not any(set(g.members) & set(r.members) for r in real):
            diffs.append(f"predicted group {g.number} ({' '.join(a.short for a in g.members)}) "
                         "has no device in any kernel group")
    return ModelCheck(baseline, predicted, real, not diffs, tuple(diffs), _limited(top))
