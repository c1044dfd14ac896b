"""Compare two topologies: what a BIOS update, a kernel update, an ACS override or another board
changes in the IOMMU groups. Pure: two `Topology` in, one `Comparison` out.

Devices are matched first by address, when what both sources know of them agrees (ids, class);
then a device that left one address and one that arrived at another with the same identity (ids,
else class and name) are one device that moved (a card added upstream renumbers the buses after
it). Groups are compared through the matched devices, so a renumbering of groups alone shows as
such and not as a split: a group whose devices land in several groups split, a group that gathers
devices of several groups is a merge, and each device whose companions changed is listed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from vfiokit.model import Device, PciAddress, Topology


@dataclass(frozen=True)
class Moved:
    """The same device at another address: `old` in A, `new` in B."""

    old: PciAddress
    new: PciAddress


@dataclass(frozen=True)
class GroupPart:
    """Some members of a group (B addresses), and the group number on the other side."""

    group: int
    members: tuple[PciAddress, ...]


@dataclass(frozen=True)
class Regroup:
    """A split: group `group` of A, whose devices are now in the groups `parts` of B. A merge:
    group `group` of B, which gathers devices of the groups `parts` of A."""

    group: int
    parts: tuple[GroupPart, ...]


@dataclass(frozen=True)
class Renumbered:
    """The same members, another group number."""

    old: int
    new: int
    members: tuple[PciAddress, ...]


@dataclass(frozen=True)
class MembershipChange:
    """A device (B address) whose group companions changed: companions it gained and lost (B
    addresses), and lost companions that vanished altogether (A addresses)."""

    address: PciAddress
    old_group: int
    new_group: int
    gained: tuple[PciAddress, ...]
    lost: tuple[PciAddress, ...]
    lost_vanished: tuple[PciAddress, ...] = ()


@dataclass(frozen=True)
class Comparison:
    a: Topology
    b: Topology
    #: Devices only in B / only in A (empty when comparing common devices only).
    appeared: tuple[Device, ...]
    vanished: tuple[Device, ...]
    moved: tuple[Moved, ...]
    splits: tuple[Regroup, ...]
    merges: tuple[Regroup, ...]
    renumbered: tuple[Renumbered, ...]
    membership: tuple[MembershipChange, ...]
    #: Devices on one side only that were left out because only common devices were compared.
    ignored: tuple[tuple[str, PciAddress], ...]
    notes: tuple[str, ...]
    #: Devices found on both sides (at the same address, or moved).
    in_common: int = 0

    @property
    def identical(self) -> bool:
        # With --common and nothing in common, "no difference" would be vacuous: two other machines.
        if self.ignored and not self.in_common:
            return False
        return not (self.appeared or self.vanished or self.moved or self.splits or self.merges
                    or self.renumbered or self.membership)


def _compatible(a: Device, b: Device) -> bool:
    """Whether what both sources know of two devices agrees (unknown agrees with anything)."""
    if a.ids is not None and b.ids is not None:
        return a.ids == b.ids
    if a.class_id is not None and b.class_id is not None:
        return a.class_id == b.class_id
    if a.class_name is not None and b.class_name is not None:
        return a.class_name == b.class_name
    return True


def _identity(d: Device) -> tuple[object, ...] | None:
    """What makes a device recognisable at another address: ids, else the names a listing printed."""
    if d.ids is not None:
        return ("ids", d.ids, d.class_id)
    if d.device_name or d.vendor_name:
        return ("name", d.class_name, d.vendor_name, d.device_name)
    return None


def _pair_moves(only_a: list[Device], only_b: list[Device]) -> list[tuple[Device, Device]]:
    """Pair devices that vanished with ones that appeared with the same identity, in address
    order (a bus renumbering keeps the order of identical devices)."""
    by_key_a: dict[tuple[object, ...], list[Device]] = defaultdict(list)
    by_key_b: dict[tuple[object, ...], list[Device]] = defaultdict(list)
    for d in only_a:
        if (k := _identity(d)) is not None:
            by_key_a[k].append(d)
    for d in only_b:
        if (k := _identity(d)) is not None:
            by_key_b[k].append(d)
    pairs = []
    for key, olds in by_key_a.items():
        pairs.extend(zip(olds, by_key_b.get(key, []), strict=False))
    return pairs


def _groups(top: Topology) -> dict[PciAddress, int]:
    return {a: g.number for g in top.groups or () for a in g.members}


def compare(a: Topology, b: Topology, common_only: bool = False) -> Comparison:
    """What changed from `a` to `b`. `common_only`: compare only devices present in both (for a
    listing that shows some groups only, such as an excerpt in an article)."""
    notes = []
    for name, top in (("A", a), ("B", b)):
        if top.groups is None:
            notes.append(f"{name} ({top.source}) has no IOMMU groups: only devices are compared")
    matched: dict[PciAddress, PciAddress] = {}  # A address -> B address
    only_a, only_b = [], []
    for dev in a.devices:
        other = b.by_address.get(dev.address)
        if other is not None and _compatible(dev, other):
            matched[dev.address] = dev.address
        else:
            only_a.append(dev)
    taken = set(matched.values())
    only_b = [d for d in b.devices if d.address not in taken]
    moved = []
    for old, new in _pair_moves(only_a, only_b):
        matched[old.address] = new.address
        moved.append(Moved(old.address, new.address))
    gone = [d for d in only_a if d.address not in matched]
    arrived = set(matched.values())
    new_ones = [d for d in only_b if d.address not in arrived]
    ignored: tuple[tuple[str, PciAddress], ...] = ()
    if common_only:
        ignored = tuple([("A", d.address) for d in gone] + [("B", d.address) for d in new_ones])
        gone, new_ones = [], []

    ga, gb = _groups(a), _groups(b)
    both = [x for x in matched if x in ga and matched[x] in gb]
    splits = _regroups((ga[x], gb[matched[x]], matched[x]) for x in both)
    merges = _regroups((gb[matched[x]], ga[x], matched[x]) for x in both)
    renumbered = _renumbered(both, matched, ga, gb, splits, merges)
    membership = _membership(a, b, both, matched, ga, gb, {d.address for d in gone},
                             {d.address for d in new_ones})
    ungrouped = [x for x in matched if (x in ga) != (matched[x] in gb)]
    if ungrouped and a.groups is not None and b.groups is not None:
        notes.append(f"{len(ungrouped)} device(s) have a group on one side only: "
                     + ", ".join(matched[x].short for x in ungrouped[:6]))
    if any(d.ids is None for d in (*a.devices, *b.devices)):
        notes.append("ids are unknown on one side for some devices: they were matched by address and "
                     "class, and a move is only seen when both sides show ids or names")
    return Comparison(a, b, tuple(new_ones), tuple(gone), tuple(moved), splits, merges, renumbered,
                      membership, ignored, tuple(notes), len(matched))


def _regroups(placed: Iterable[tuple[int, int, PciAddress]]) -> tuple[Regroup, ...]:
    """From (group, group on the other side, B address) triples: the groups whose members are
    spread over several groups of the other side."""
    by: dict[int, dict[int, list[PciAddress]]] = defaultdict(lambda: defaultdict(list))
    for group, other, addr in placed:
        by[group][other].append(addr)
    return tuple(Regroup(g, tuple(GroupPart(o, tuple(sorted(m))) for o, m in sorted(parts.items())))
                 for g, parts in sorted(by.items()) if len(parts) > 1)


def _renumbered(both: list[PciAddress], matched: dict[PciAddress, PciAddress], ga: dict[PciAddress, int],
                gb: dict[PciAddress, int], splits: tuple[Regroup, ...],
                merges: tuple[Regroup, ...]) -> tuple[Renumbered, ...]:
    moved_groups_a = {s.group for s in splits} | {p.group for m in merges for p in m.parts}
    seen: dict[int, tuple[int, list[PciAddress]]] = {}
    for x in both:
        if ga[x] in moved_groups_a:
            continue
        seen.setdefault(ga[x], (gb[matched[x]], []))[1].append(matched[x])
    return tuple(Renumbered(old, new, tuple(sorted(m))) for old, (new, m) in sorted(seen.items())
                 if old != new)


def _membership(a: Topology, b: Topology, both: list[PciAddress], matched: dict[PciAddress, PciAddress],
                ga: dict[PciAddress, int], gb: dict[PciAddress, int], gone: set[PciAddress],
                new_ones: set[PciAddress]) -> tuple[MembershipChange, ...]:
    """Companions of each device before and after, in B's addresses; vanished ones apart."""
    present = {matched[y] for y in both}
    out = []
    for x in both:
        before, before_gone = set(), set()
        for y in a.by_group[ga[x]].members:
            if y == x:
                continue
            if y in matched and matched[y] in present:
                before.add(matched[y])
            elif y in gone:
                before_gone.add(y)
        after = {z for z in b.by_group[gb[matched[x]]].members
                 if z != matched[x] and (z in present or z in new_ones)}
        if before != after or before_gone:
            out.append(MembershipChange(matched[x], ga[x], gb[matched[x]],
                                        tuple(sorted(after - before)), tuple(sorted(before - after)),
                                        tuple(sorted(before_gone))))
    return tuple(sorted(out, key=lambda c: c.address))
