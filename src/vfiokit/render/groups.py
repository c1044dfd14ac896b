"""Views of a topology's IOMMU groups: the human view, JSON, and the article's script format."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from vfiokit.model import Device, PciAddress, Topology
from vfiokit.pciids import PciIds, lspci_line

#: A function giving extra marks for a device (e.g. "host needs: root disk"), keyed by address.
Marker = Callable[[Device], list[str]]


def shows_domains(top: Topology) -> bool:
    """lspci prints domains on every line as soon as one device has a non-zero domain."""
    return any(d.address.domain for d in top.devices)


def flags(dev: Device) -> list[str]:
    out = []
    if dev.is_bridge:
        out.append("bridge")
    if dev.boot_vga:
        out.append("boot_vga")
    if dev.physfn is not None:
        out.append("sriov_vf")
    if dev.reads_all_ones:
        out.append("reads_all_ones")
    return out


def device_json(dev: Device, ids: PciIds, marks: Iterable[str] = ()) -> dict[str, Any]:
    """One device as JSON: address with domain, ids, class, names, driver, parent bridge, flags."""
    line = lspci_line(dev, ids)
    klass, _, rest = line.partition(" ")[2].partition(": ")
    name = rest.rsplit(" (rev ", 1)[0] if dev.revision else rest
    # A source that knows neither (a pasted `find` listing) gives null, not lspci's placeholders.
    if dev.class_name is None and dev.class_id is None:
        klass = None
    if not (dev.vendor_name or dev.device_name or dev.ids):
        name = None
    return {
        "address": str(dev.address),
        "vendor_id": None if dev.vendor_id is None else f"{dev.vendor_id:04x}",
        "device_id": None if dev.device_id is None else f"{dev.device_id:04x}",
        "subsystem": dev.subsystem_ids,
        "class": None if dev.class_id is None else f"{dev.class_id:04x}",
        "class_name": klass,
        "name": name,
        "vendor_name": dev.vendor_name or (ids.vendor(dev.vendor_id) if dev.vendor_id is not None else None),
        "device_name": dev.device_name or (ids.device(dev.vendor_id, dev.device_id)
                                           if dev.vendor_id is not None and dev.device_id is not None
                                           else None),
        "revision": None if dev.revision is None else f"{dev.revision:02x}",
        "driver": dev.driver,
        "iommu_group": dev.iommu_group,
        # The bridge above it (null on a root bus, or when the source does not know the tree).
        "parent": None if dev.parent is None else str(dev.parent),
        "flags": flags(dev),
        "marks": list(marks),
    }


def groups_json(top: Topology, ids: PciIds, marker: Marker | None = None,
                next_boot: Mapping[PciAddress, str | None] | None = None) -> dict[str, Any]:
    """The groups as JSON; each device's `driver_next_boot` is null when the source cannot tell
    (a snapshot, sample or listing has no boot configuration; a bridge is left to pcieport)."""
    mark = marker or (lambda d: [])
    after = next_boot or {}

    def dev(d: Device) -> dict[str, Any]:
        return {**device_json(d, ids, mark(d)), "driver_next_boot": after.get(d.address)}

    grouped = {a for g in top.groups or () for a in g.members}
    return {
        "groups": [
            {"number": g.number,
             "devices": [dev(top.by_address[a]) for a in g.members if a in top.by_address]}
            for g in top.groups or ()
        ],
        "ungrouped": [dev(d) for d in top.devices
                      if d.address not in grouped and d.address not in top.group_unknown],
        "group_unknown": [dev(d) for d in top.devices if d.address in top.group_unknown],
    }


def groups_seed(top: Topology, ids: PciIds) -> str:
    """What the article's script prints: `IOMMU Group N`, then TAB + `lspci -s ADDR` per member.

    The script globs `devices/*`, so members come in the shell's sort order of their full
    addresses, and `ls -v` orders the groups numerically.
    """
    domain = shows_domains(top)
    out = []
    for g in top.groups or ():
        out.append(f"IOMMU Group {g.number}\n")
        for a in sorted(g.members, key=str):
            dev = top.by_address.get(a)
            if dev is not None:
                out.append(f"\t{lspci_line(dev, ids, domain=domain)}\n")
    return "".join(out)


#: A line of the human view: text segments with an optional rich style each.
Line = list[tuple[str, str | None]]

_FLAG_STYLE = {"bridge": ("bridge", "dim"), "boot_vga": ("boot VGA", "magenta"), "sriov_vf": ("SR-IOV VF", "dim"),
               "reads_all_ones": ("reads all ones (rev ff): powered off or fell off the bus, often after a "
                                  "failed reset", "red")}


def groups_text(top: Topology, ids: PciIds, marker: Marker | None = None) -> Iterator[Line]:
    """The human view: one header per group, one line per device, then ungrouped devices; made
    line by line as it is printed (a million-device listing is not held twice)."""
    mark = marker or (lambda d: [])
    domain = shows_domains(top)

    def line(dev: Device) -> Line:
        tags: Line = []
        if dev.driver:
            tags.append((f"driver {dev.driver}", "cyan"))
        elif dev.driver == "":
            tags.append(("no driver", "dim"))
        tags.extend(_FLAG_STYLE.get(f, (f, None)) for f in flags(dev))
        tags.extend((m, "yellow") for m in mark(dev))
        out: Line = [("  " + lspci_line(dev, ids, numeric=True, domain=domain), None)]
        for i, tag in enumerate(tags):
            out.append(("  " if i == 0 else " · ", None))
            out.append(tag)
        return out

    for g in top.groups or ():
        members = [top.by_address[a] for a in g.members if a in top.by_address]
        size = "alone" if len(members) == 1 else f"{len(members)} devices"
        yield [(f"IOMMU group {g.number}", "bold"), (f" ({size})", "dim")]
        yield from (line(dev) for dev in members)
    grouped = {a for g in top.groups or () for a in g.members}
    unknown = [d for d in top.devices if d.address in top.group_unknown]
    if unknown:
        yield [("IOMMU group unknown", "bold"), (" (shown outside any group by the source)", "dim")]
        yield from (line(dev) for dev in unknown)
    loose = [d for d in top.devices if d.address not in grouped and d.address not in top.group_unknown]
    if loose:
        yield [("Not in any IOMMU group", "bold"),
               (" (the IOMMU does not translate for these; they cannot be passed through)", "dim")]
        yield from (line(dev) for dev in loose)
