"""Plan a cluster PCI mapping (`/cluster/mapping/pci`): which `map` entries it ends with, and why not.

Pure: the caller reads each node's devices and the existing mapping; `edits/pve_apply` writes the plan.
The rules follow pve-guest-common `PVE/Mapping/PCI.pm`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vfiokit.errors import BadInput, DeviceNotFound, Refused
from vfiokit.formats.pve_hostpci import CONFIGID_RE
from vfiokit.formats.pve_mapping import parse_map_entry
from vfiokit.model import PciAddress, Topology


@dataclass(frozen=True)
class MapEntry:
    """One `DEVICE@NODE` of the command line, as the fields of a `map` entry."""

    spec: str
    node: str
    fields: dict[str, str]

    @property
    def text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.fields.items())


@dataclass(frozen=True)
class MappingPlan:
    """The mapping `name` before (`old`) and after (`final`): the diff `cluster map` shows and writes."""

    name: str
    old: tuple[str, ...]
    final: tuple[str, ...]
    description: str | None
    existing: Mapping[str, Any] | None

    @property
    def empty(self) -> bool:
        same_description = self.description is None or self.description == (self.existing or {}).get("description")
        return self.final == self.old and same_description

    def params(self) -> dict[str, Any]:
        """The API parameters of the write (POST for a new mapping, PUT with the digest otherwise)."""
        params: dict[str, Any] = {"map": list(self.final)}
        if self.description is not None:
            params["description"] = self.description
        return params


def check_name(name: str) -> None:
    if not CONFIGID_RE.match(name):
        raise BadInput(f"{name!r}: invalid configuration ID (a letter, then letters, digits, '-' or '_')")


def map_entry(spec: str, node: str, top: Topology, addr: PciAddress, whole_slot: bool) -> MapEntry:
    """The `map` fields of the device at `addr` on `node` (its topology from the node's /hardware/pci)."""
    try:
        dev = top.device(addr)
    except DeviceNotFound:
        raise DeviceNotFound(f"no PCI device at {addr} on node {node}") from None
    if dev.ids is None:
        raise BadInput(f"{node}: {addr} has no vendor:device id in the API answer")
    # pve-guest-common Mapping/PCI.pm: a path without function maps the whole device and is
    # checked against the attributes of its function 0.
    fields = {"node": node, "path": addr.slot_id if whole_slot else str(addr), "id": dev.ids}
    if dev.subsystem_ids is not None:
        fields["subsystem-id"] = dev.subsystem_ids
    if dev.iommu_group is not None:
        fields["iommugroup"] = str(dev.iommu_group)
    return MapEntry(spec, node, fields)


def _overlap(a: str, b: str) -> bool:
    """Whether two map paths (`DDDD:BB:DD` for a whole device, or `DDDD:BB:DD.F`) share a function;
    several entries of one node are alternatives (pve-guest-common Mapping/PCI.pm), never the same
    device again."""
    return a.split(".")[0] == b.split(".")[0] and ("." not in a or "." not in b or a == b)


def _check_entries(entries: Sequence[MapEntry]) -> None:
    """One device named twice on a node, or different cards across nodes: refused before any write."""
    for i, e in enumerate(entries):
        for other in entries[:i]:
            if other.node == e.node and _overlap(e.fields["path"], other.fields["path"]):
                raise BadInput(f"'{e.spec}': {e.fields['path']} on node {e.node} is already in "
                               f"{other.fields['path']}: one device named twice in one mapping")
    first = entries[0]
    for e in entries[1:]:
        for key in ("id", "subsystem-id"):
            if e.fields.get(key) != first.fields.get(key):
                raise Refused(f"the devices differ: {first.fields['path']}@{first.node} has {key} "
                              f"{first.fields.get(key, 'none')}, {e.fields['path']}@{e.node} has "
                              f"{e.fields.get(key, 'none')}",
                              hint="a mapping names the same card on every node; make one mapping per kind")


def plan_mapping(name: str, entries: Sequence[MapEntry], existing: Mapping[str, Any] | None,
                 description: str | None) -> MappingPlan:
    """The new entries replace those of the same nodes; other nodes' entries are kept."""
    _check_entries(entries)
    old = tuple(existing.get("map", [])) if existing is not None else ()
    nodes = {e.node for e in entries}
    kept = [e for e in old if parse_map_entry(e).get("node") not in nodes]
    return MappingPlan(name, old, (*kept, *(e.text for e in entries)), description, existing)
