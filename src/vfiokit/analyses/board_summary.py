"""What matters when buying a board, from one of its listings; and the corpus search.

A listing names no slots, so the cards people put in the x16 slots stand in for them: the
discrete GPUs (display class, off the root bus), in address order (which is not slot order:
a chipset slot's card can come first). For them and for the onboard
NICs, SATA/NVMe and USB controllers, the summary asks `passthrough.judge` what passing each takes
from the host, as `vfiokit check` would: alone (only its own functions and bridges), or sharing a
group with other devices (the chipset's, usually). Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from vfiokit.analyses.passthrough import judge
from vfiokit.formats.board_header import BoardHeader
from vfiokit.model import Device, PciAddress, Topology

#: Controllers a buyer may want to pass through, by PCI class (base, sub): name.
ONBOARD = {0x0200: "NIC", 0x0280: "Wi-Fi", 0x0106: "SATA", 0x0108: "NVMe", 0x0c03: "USB"}
#: lspci's class names (pci.ids subclass names) for listings printed without `[cccc]` (plain
#: `lspci`, as in the seed article): enough to tell GPUs, controllers and bridges apart.
_CLASS_NAMES = {"vga compatible controller": 0x0300, "3d controller": 0x0302, "display controller": 0x0380,
                "ethernet controller": 0x0200, "network controller": 0x0280, "sata controller": 0x0106,
                "non-volatile memory controller": 0x0108, "usb controller": 0x0c03, "pci bridge": 0x0604,
                "encryption controller": 0x1080}


def class_id(dev: Device) -> int | None:
    """The device's class (base, sub), from its code or, failing that, from lspci's class name."""
    if dev.class_id is not None:
        return dev.class_id
    return _CLASS_NAMES.get((dev.class_name or "").strip().lower())


@dataclass(frozen=True)
class Placement:
    """One device and whether it is alone in its group (its own functions and bridges aside)."""

    address: PciAddress
    kind: str
    group: int | None
    alone: bool
    #: Devices of other cards in its group (bridges and its own functions left out).
    others: tuple[PciAddress, ...]


@dataclass(frozen=True)
class BoardSummary:
    header: BoardHeader
    groups: int
    #: Discrete GPUs (the x16 slots' cards) in address order.
    gpus: tuple[Placement, ...]
    onboard: tuple[Placement, ...]
    #: Names of other bundled listings of the same board with the override the other way.
    siblings: tuple[str, ...] = ()


def _placement(top: Topology, dev: Device, kind: str) -> Placement:
    group = top.group_of(dev.address)
    if group is None:
        return Placement(dev.address, kind, None, False, ())
    verdict = judge(top, [dev.address])
    others = tuple(m.address for m in verdict.members
                   if m.address != dev.address and class_id(m.device) != 0x0604
                   and not m.address.same_slot(dev.address))
    return Placement(dev.address, kind, group.number, not others, others)


def _is_discrete_gpu(dev: Device) -> bool:
    # Display class 03xx; an integrated GPU sits on bus 0 (Intel 00:02.0) or behind the APU's
    # internal bridge with its audio and USB functions, so "bus != 0 and function 0" is the card.
    cls = class_id(dev)
    return cls is not None and cls >> 8 == 0x03 and dev.address.bus != 0 and dev.address.function == 0


def summarize(header: BoardHeader, top: Topology, siblings: Iterable[str] = ()) -> BoardSummary:
    """The buyer's view of one listing."""
    gpus = [d for d in top.devices if _is_discrete_gpu(d) and d.iommu_group is not None]
    # An APU's iGPU is display class off bus 0 too; it shares the slot with the APU's audio,
    # crypto and USB functions (1022:15xx/16xx), which a card never has.
    gpus = [d for d in gpus if not any(o.address.same_slot(d.address) and class_id(o) in (0x1080, 0x0c03)
                                       and o.vendor_id == 0x1022 for o in top.devices)]
    onboard = [d for d in top.devices if class_id(d) in ONBOARD and d.iommu_group is not None
               and not any(g.address.same_slot(d.address) for g in gpus)]
    return BoardSummary(header, len(top.groups or ()),
                        tuple(_placement(top, d, "GPU") for d in gpus),
                        tuple(_placement(top, d, ONBOARD[class_id(d)]) for d in onboard),  # type: ignore[index]
                        tuple(siblings))


def siblings(header: BoardHeader, all_headers: Iterable[BoardHeader]) -> list[str]:
    """Other listings of the same board whose override state differs (the 'with override' view)."""
    return [h.name for h in all_headers
            if h.name != header.name and h.board == header.board and h.override_on != header.override_on]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def search(headers: Iterable[BoardHeader], query: str) -> list[BoardHeader]:
    """The listings whose board, vendor, chipset, CPU or name hold every word of `query`.

    A word matches the start of a word of the header ("aorus" matches "AORUS", "x570" matches
    "X570-chipset", "3900" matches "3900X"), case-insensitively; an empty query matches all."""
    wanted = _words(query)
    found = []
    for h in headers:
        have = _words(" ".join((h.name, h.board, h.vendor, h.chipset, h.cpu)))
        if all(any(w.startswith(q) for w in have) for q in wanted):
            found.append(h)
    return found
