"""`check`'s read of the host: only the functions a verdict on a few devices looks at.

A verdict reads the targets' IOMMU groups whole (the group folder names every member), and for
each member the bridges above it (its `parent`; the kernel's port-type correction reads the
parent's type, `capture._correct_port_types`) and every function of its slot (a card's other
functions: `Verdict.whole_slot`, the "same card" role). Each function read pulls in its own
group, so every group in the topology is whole. On a host of 10,000 functions that is a few
dozen folders instead of 10,000; the notes then speak of the functions read.

`read_around` gives None whenever only the whole host can answer, and the caller reads it all
(`sysfs.read_topology`): a word that names no function (its error lists the nearest addresses), a
bridge (its error lists the devices behind it), a function without an IOMMU group or outside
/sys/devices, a host without IOMMU groups.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from vfiokit import rootfs
from vfiokit.errors import BadInput
from vfiokit.gc_pause import gc_paused
from vfiokit.model import Device, PciAddress, Topology
from vfiokit.sources import capture as cap
from vfiokit.sources import sysfs
from vfiokit.sources import sysfs_walk as walk


def read_around(root: str | os.PathLike[str], places: Iterable[tuple[PciAddress, bool]]) -> Topology | None:
    """The part of the host below `root` that judging `places` reads: each an address and whether
    the word named its whole slot (`04:00`) rather than one function (`04:00.0`). No reset method
    is read, as `read_topology(reset_methods=False)`: the caller reads its targets' with
    `sysfs.with_reset_methods`. None when the whole host must be read instead (see the module doc)."""
    origin = sysfs.source_name(root)
    root = os.path.abspath(root)
    names = walk.bus_functions(root)
    by_slot: dict[str, list[str]] = {}
    for name in names:
        by_slot.setdefault(name[:10], []).append(name)  # "0000:01:00" of "0000:01:00.0"
    named: set[str] = set()
    for addr, whole in places:
        in_slot = by_slot.get(addr.slot_id, [])
        if not in_slot or not (whole or str(addr) in in_slot):
            return None  # the whole read says what is there instead
        named.update(in_slot if whole else [str(addr)])
    with gc_paused():
        return _read(root, origin, named, by_slot)


def _read(root: str, origin: str, named: set[str], by_slot: dict[str, list[str]]) -> Topology | None:
    """Read and model the functions `_closure` finds around `named`, as the walk reads each."""
    found = _closure(root, named, by_slot)
    if found is None:
        return None
    paths, groups = found
    notes: list[str] = []
    # Parents before their children, as the walk yields them: a parent's path is a prefix of theirs.
    folders = (walk.read_function(f"{root}/sys/devices/{rel}", rel, _parent(rel), notes, cap.NO_RESET_ATTRS)
               for rel in sorted(paths.values()))
    table = cap.Groups(groups, origin)
    modelled = sysfs.model_functions(filter(None, folders), table, origin)
    if any(isinstance(d, Device) and d.is_bridge for d in map(modelled.get, named)):
        return None
    return sysfs.assemble(root, origin, modelled, table, notes)


def _closure(root: str, named: set[str], by_slot: dict[str, list[str]]
             ) -> tuple[dict[str, str], dict[str, list[str]]] | None:
    """The functions to read, each with its path below /sys/devices, and the groups they are in
    with their members: from `named`, every member of their groups, the bridges above and the
    functions of the same slot, until nothing is added."""
    paths: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    todo = sorted(named)
    wanted = set(todo)
    sysdevices = os.path.join(root, "sys/devices")
    while todo:
        name = todo.pop()
        try:
            folder = rootfs.resolve_under(root, f"/sys/bus/pci/devices/{name}")
            number = os.readlink(f"{folder}/iommu_group").rpartition("/")[2]
        except (BadInput, OSError):
            return None
        if not number.isdigit():  # the walk reads group folders named by a number only
            return None
        rel = os.path.relpath(folder, sysdevices)
        parts = rel.split("/")
        # The walk reaches a folder through address-named folders below a pci* root only.
        if not parts[0].startswith("pci") or not all(walk.is_address(p) for p in parts[1:]):
            return None
        paths[name] = rel
        more = [*parts[1:-1], *by_slot.get(name[:10], ())]
        if number not in groups:
            try:
                groups[number] = sorted(os.listdir(f"{root}/sys/kernel/iommu_groups/{number}/devices"))
            except OSError:
                return None
            more += [m for m in groups[number] if walk.is_address(m)]
        if name not in groups[number]:  # the link and the group folder disagree: the folders decide
            return None
        for m in more:
            if m not in wanted:
                wanted.add(m)
                todo.append(m)
    return paths, groups


def _parent(rel: str) -> str | None:
    """The function folder a function's folder sits in (its bridge); None on a root bus."""
    above = rel.rsplit("/", 2)
    return above[-2] if len(above) == 3 and walk.is_address(above[-2]) else None
