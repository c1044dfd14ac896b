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

from collections import Counter
from dataclasses import dataclass, replace

from vfiokit.analyses.acs_override import (
    NONE,
    AcsOverride,
    OverrideSupport,
    effective_override,
    kernel_support,
)
from vfiokit.analyses.grouping import (
    KernelFacts,
    PciTree,
    config_unknown,
    groups_of,
    override_applies,
    predict_partition,
)
from vfiokit.gc_pause import gc_paused
from vfiokit.model import (
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


def _renumber(order: list[Device], part: Partition) -> Partition:
    """Number blocks the kernel's way: by their first member in add order (`order`)."""
    out: Partition = {}
    new_of: dict[int, int] = {}
    for dev in order:
        a = dev.address
        if a in part:
            out[a] = new_of.setdefault(part[a], len(new_of))
    return out


def _meet(order: list[Device], a: Partition, b: Partition) -> Partition:
    """The common refinement of two partitions (devices share a group only if they do in both),
    numbered the kernel's way, by each group's first member in add order (`order`)."""
    pairs: dict[tuple[int, int], int] = {}
    out: Partition = {}
    for dev in order:
        addr = dev.address
        if addr in a and addr in b:
            out[addr] = pairs.setdefault((a[addr], b[addr]), len(pairs))
    return out


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
                  facts: KernelFacts | None = None,
                  tree: PciTree | None = None) -> tuple[Partition, tuple[int, ...]]:
    """The groups `top` gets with `override`, and the real groups kept whole (`tree`: top's
    PciTree, when the caller tries several overrides).

    When the override covers the one the host booted with, it can only split today's groups, so
    the prediction is intersected with the real ones (without root, where unknown devices count
    as not isolating, only provable splits remain). A real group that the model of today's boot
    would itself split was joined for a reason config space does not show (a DMA alias the
    firmware declares): no override undoes that, so such a group is kept whole."""
    baseline = effective_override(top.host) if baseline is None else baseline
    tree = PciTree(top) if tree is None else tree
    part = predict_partition(top, override, facts, tree)
    if not (top.groups and override.covers(baseline)):
        return part, ()
    part = _meet(tree.order, _real(top), part)
    today = predict_partition(top, baseline, facts, tree) if override != baseline else part
    kept: list[int] = []
    for g in top.groups:
        if len(set(map(today.get, g.members))) > 1:
            kept.append(g.number)
            first = next((part[a] for a in g.members if a in part), None)
            for a in g.members:
                if a in part and first is not None:
                    part[a] = first
    return (_renumber(tree.order, part) if kept else part), tuple(kept)


def mates_of(part: Partition) -> dict[PciAddress, frozenset[PciAddress]]:
    members: dict[int, set[PciAddress]] = {}
    for a, n in part.items():
        members.setdefault(n, set()).add(a)
    return {a: frozenset(members[n]) for a, n in part.items()}


def _members(part: Partition, addresses: list[PciAddress]) -> dict[int, list[PciAddress]]:
    """Each group's members in address order (`addresses`: at least every address of `part`, sorted)."""
    out: dict[int, list[PciAddress]] = {}
    for a in addresses:
        n = part.get(a)
        if n is not None:
            members = out.get(n)
            if members is None:
                out[n] = [a]
            else:
                members.append(a)
    return out


def _blocks(part_from: Partition, part_to: Partition) -> dict[int, dict[int, None]]:
    """For each group of `part_from`, the groups of `part_to` its devices are in, in the order met."""
    out: dict[int, dict[int, None]] = {}
    for a, n in part_from.items():
        m = part_to.get(a)
        if m is not None:
            seen = out.get(n)
            if seen is None:
                out[n] = {m: None}
            else:
                seen[m] = None
    return out


def simulate(top: Topology, override: AcsOverride) -> Simulation:
    """Today's groups beside those `override` would give, and what that changes and cuts."""
    with gc_paused():
        return _simulate(top, override)


def _simulate(top: Topology, override: AcsOverride) -> Simulation:
    facts = KernelFacts.of(top)
    baseline = effective_override(top.host)
    limited = prediction_limited(top)
    if (unknown := prediction_unknown(top)) is not None:
        # A partition here would come from devices counted as not isolating, not from the
        # hardware: nothing of it would be a prediction.
        return Simulation(override, baseline, kernel_support(top.host), top.groups, (), (), (), (), (), (),
                          limited, (), unknown)
    tree = PciTree(top)
    predicted_part, kept = partition_for(top, override, baseline, facts, tree)
    predicted = groups_of(predicted_part)
    real = _real(top)
    current = top.groups
    # The hardware's own isolation: the real groups if the host booted without an override,
    # else the prediction without one.
    natural_part = real if (current and baseline.empty) else partition_for(top, NONE, baseline, facts, tree)[0]
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

    # Every address in address order (the order the model holds devices in: a linear sort).
    addresses = sorted(top.by_address)
    changes: tuple[DeviceChange, ...] = ()
    splits: list[tuple[int, tuple[Group, ...]]] = []
    merges: list[tuple[Group, tuple[int, ...]]] = []
    if current is not None:
        changes = _changes(real, predicted_part, addresses)
        by_number = {g.number: g for g in predicted}
        pieces = _blocks(real, predicted_part)
        splits = [(n, tuple(by_number[m] for m in pieces[n])) for n in sorted(pieces) if len(pieces[n]) > 1]
        sources = _blocks(predicted_part, real)
        merges = [(g, tuple(sorted(olds))) for g in predicted
                  if (olds := sources.get(g.number)) is not None and len(olds) > 1]

    assumed = _assumed(top, natural_part, predicted_part, predicted, override, addresses)
    assumed_today = (_assumed(top, natural_part, real, current, baseline, addresses)
                     if current is not None and not baseline.empty else ())
    return Simulation(override, baseline, kernel_support(top.host), current, predicted, tuple(splits),
                      tuple(merges), changes, assumed, assumed_today, limited, tuple(notes))


def _changes(now: Partition, then: Partition, addresses: list[PciAddress]) -> tuple[DeviceChange, ...]:
    """Each device whose group number or group-mates differ between `now` and `then`, in address
    order. A device outside a partition is alone in it. Devices in the same group in both share
    the same answer: it is worked out once for all of them."""
    now_members, then_members = _members(now, addresses), _members(then, addresses)
    both = Counter((n, t) for a, n in now.items() if (t := then.get(a)) is not None)
    mates: dict[tuple[int, int], tuple[tuple[PciAddress, ...], tuple[PciAddress, ...]]] = {}
    out = []
    for a in addresses:
        n, t = now.get(a), then.get(a)
        if n is None and t is None:
            continue
        n_m = now_members[n] if n is not None else (a,)
        t_m = then_members[t] if t is not None else (a,)
        if n is not None and t is not None:
            # Both groups hold `a`: the same devices exactly when both are the devices they share.
            if n == t and len(n_m) == len(t_m) == both[(n, t)]:
                continue
            if (n, t) not in mates:
                mates[(n, t)] = (tuple(x for x in n_m if then.get(x) != t), tuple(x for x in t_m if now.get(x) != n))
            separated, joined = mates[(n, t)]
        else:
            separated = tuple(x for x in n_m if x != a)
            joined = tuple(x for x in t_m if x != a)
        out.append(DeviceChange(a, n, t, separated, joined, len(n_m) == 1, len(t_m) == 1))
    return tuple(out)


def _assumed(top: Topology, natural: Partition, part: Partition, groups: tuple[Group, ...],
             override: AcsOverride, addresses: list[PciAddress]) -> tuple[AssumedIsolation, ...]:
    """The hardware groups `part` cuts into pieces, and the devices the override declares isolating."""
    pieces = _blocks(natural, part)
    cut = [n for n in sorted(pieces) if len(pieces[n]) > 1]
    if not cut:
        return ()
    by_number = {g.number: g for g in groups}
    natural_members = _members(natural, addresses)
    out = []
    for n in cut:
        members = tuple(natural_members[n])
        because = tuple((a, why) for a in members
                        if (why := override_applies(top.by_address[a], override)) is not None)
        out.append(AssumedIsolation(members, tuple(by_number[m] for m in pieces[n]), because))
    return tuple(out)


def with_groups(top: Topology, groups: tuple[Group, ...]) -> Topology:
    """`top` as it would look with `groups` (for judging a passthrough under predicted groups)."""
    number = {a: g.number for g in groups for a in g.members}
    devices = tuple(d if d.iommu_group == (n := number.get(d.address)) else d._replace(iommu_group=n)
                    for d in top.devices)
    return replace(top, devices=devices, groups=groups)
