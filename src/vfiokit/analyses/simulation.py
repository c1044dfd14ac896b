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

from vfiokit.analyses.acs_override import (
    NONE,
    AcsOverride,
    OverrideSupport,
    effective_override,
    kernel_support,
)
from vfiokit.analyses.grouping import (
    KernelFacts,
    add_order,
    config_unknown,
    groups_of,
    override_applies,
    predict_partition,
)
from vfiokit.model import (
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


def mates_of(part: Partition) -> dict[PciAddress, frozenset[PciAddress]]:
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
        now, then = mates_of(real), mates_of(predicted_part)
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
