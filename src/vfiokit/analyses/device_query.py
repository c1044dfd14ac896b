"""The user's device words: one resolver behind every command that takes a device.

A word is, in the order tried:
- an address, `[DDDD:]BB:DD.F` (`0000:04:00.0`, `04:00.0`): that function;
- a slot, `[DDDD:]BB:DD` (`04:00`): every function of the card, as Proxmox's hostpci accepts it;
- ids, `vvvv:dddd` (`10de:1430`, four hex digits each, as lspci -nn prints them): the device(s)
  with that vendor and device id;
- a class word of `CLASS_WORDS` (`gpu`, `nic`, `nvme`...): the device(s) of those PCI classes.

A word that matches several devices is never guessed: `Ambiguous` (exit 4) lists them with their
addresses, and the user names one. A word that matches nothing gets the nearest addresses or
words ("did you mean"). Bridges never match ids or class words: Proxmox never passes a bridge.

Pure: a `Topology` in, addresses out. Usage from any command:

    from vfiokit.analyses.device_query import resolve
    addresses = resolve(words, top, again="--sample X")   # list[PciAddress], slot order kept

`again` is the source option the user gave, repeated in hints so a suggested command reads the
same machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import NamedTuple

from vfiokit.errors import BadInput, DeviceNotFound
from vfiokit.model import Device, PciAddress, Topology

#: pci.ids class names (`C 03  Display controller`) and subclass names (`00  VGA compatible
#: controller`) of the classes the words below use, keyed as lspci prints them (`03`, `0300`).
PCI_CLASS_NAMES: dict[int, str] = {
    0x01: "Mass storage controller", 0x0100: "SCSI storage controller", 0x0104: "RAID bus controller",
    0x0106: "SATA controller", 0x0107: "Serial Attached SCSI controller",
    0x0108: "Non-Volatile memory controller",
    0x02: "Network controller", 0x0200: "Ethernet controller", 0x0280: "Network controller",
    0x03: "Display controller", 0x0300: "VGA compatible controller", 0x0302: "3D controller",
    0x0380: "Display controller",
    0x0401: "Multimedia audio controller", 0x0403: "Audio device",
    0x0C03: "USB controller", 0x0C04: "Fibre Channel",
}


class ClassWord(NamedTuple):
    """A word for a set of PCI classes: `codes` are class ids (base<<8 | sub, as lspci's `[0300]`)
    or, when below 0x100, whole base classes."""

    word: str
    codes: tuple[int, ...]

    def matches(self, dev: Device) -> bool:
        if dev.is_bridge:
            return False
        if dev.class_id is None:
            # A listing printed without -nn names the class only ("VGA compatible controller").
            return dev.class_name is not None and dev.class_name in self.class_names
        return any(dev.class_id == c if c > 0xFF else dev.class_id >> 8 == c for c in self.codes)

    @property
    def class_names(self) -> frozenset[str]:
        """The pci.ids names of the classes this word covers (subclass names of a whole base class)."""
        return frozenset(name for key, name in PCI_CLASS_NAMES.items() if key > 0xFF and any(
            key == c if c > 0xFF else key >> 8 == c for c in self.codes))

    @property
    def names(self) -> str:
        """`SATA controller [0106]`, or `Display controller [03xx]` for a whole base class."""
        return ", ".join(f"{PCI_CLASS_NAMES[c]} [{c:04x}]" if c > 0xFF else f"{PCI_CLASS_NAMES[c]} [{c:02x}xx]"
                         for c in self.codes)


#: The class words, defined by PCI class codes (pci.ids names above). `storage` is for
#: `groups --class`, where a whole family is wanted; the others name what people pass through.
CLASS_WORDS: dict[str, ClassWord] = {w.word: w for w in (
    ClassWord("gpu", (0x03,)),
    ClassWord("vga", (0x0300,)),
    ClassWord("nic", (0x02,)),
    ClassWord("sata", (0x0106,)),
    ClassWord("nvme", (0x0108,)),
    ClassWord("usb", (0x0C03,)),
    ClassWord("audio", (0x0401, 0x0403)),
    ClassWord("hba", (0x0100, 0x0104, 0x0107, 0x0C04)),
    ClassWord("storage", (0x01,)),
)}

_IDS_RE = re.compile(r"^(?P<vendor>[0-9a-f]{4}):(?P<device>[0-9a-f]{4})$")

ID_HINT = "expected [DDDD:]BB:DD.F, or BB:DD for all functions of a slot (e.g. 07:00.0, 0000:07:00, 01:00)"
FORMS = ("an address (04:00.0), a slot (04:00), ids (10de:1430) or a class word ("
          + ", ".join(CLASS_WORDS) + ")")


class Ambiguous(DeviceNotFound):
    """A word names several devices: the user must name one (exit 4, never a guess)."""

    def __init__(self, message: str, candidates: list[PciAddress], hint: str | None, device: str) -> None:
        super().__init__(message, hint=hint, device=device)
        self.candidates = candidates

    def fields(self) -> dict[str, object]:
        return {**super().fields(), "candidates": [str(a) for a in self.candidates]}


def describe(dev: Device, domain: bool = False) -> str:
    """`04:00.0 (VGA compatible controller 10de:1430)`: enough to tell candidates apart without
    names; with the domain (`0001:04:00.0`) when `domain` (`_written`)."""
    what = dev.class_name or _class_label(dev.class_id)
    return f"{_written(dev.address, domain)} ({' '.join(filter(None, [what, dev.ids]))})"


def _domains(top: Topology) -> bool:
    """The host has a function outside domain 0: lspci then writes every address with its domain."""
    return any(d.address.domain for d in top.devices)


def _written(addr: PciAddress, domain: bool) -> str:
    """`addr` as lspci writes it: `0001:04:00.0` when `domain` (`_domains`), else `04:00.0`."""
    return str(addr) if domain else addr.short


def _class_label(class_id: int | None) -> str:
    if class_id is None:
        return ""
    return PCI_CLASS_NAMES.get(class_id) or PCI_CLASS_NAMES.get(class_id >> 8) or f"class {class_id:04x}"


def _where(top: Topology) -> str:
    return f" in {top.source}" if top.source else ""


def _nearest(addr: PciAddress, top: Topology, slots: bool = False) -> list[str]:
    """The three addresses (or slots) of `top` nearest to `addr`, each once, written as lspci writes
    them: with the domain when the host has more than one (`0001:04:00.0` and `0002:04:00.0` are
    not both "04:00.0")."""
    import difflib  # here: only a device not found pays for it

    domains = _domains(top)

    def written(a: PciAddress) -> str:
        text = _written(a, domains)
        return text.rpartition(".")[0] if slots else text

    return difflib.get_close_matches(written(addr), sorted({written(d.address) for d in top.devices}), n=3,
                                     cutoff=0.6)


def _not_found(word: str, what: str, top: Topology, again: str, near: list[str]) -> DeviceNotFound:
    hint = f"did you mean {' or '.join(near)}? " if near else ""
    hint += f"'vfiokit groups{again}' lists the devices"
    return DeviceNotFound(f"{what}{_where(top)}", hint=hint, device=word)


#: How many of the devices a word names an error lists: a class word on a host with thousands of
#: SR-IOV functions names thousands (`--json` still gives every one in `candidates`).
_LISTED = 8


def _many(word: str, found: list[Device], top: Topology, again: str) -> Ambiguous:
    domain = _domains(top)
    listed = ", ".join(describe(d, domain) for d in found[:_LISTED])
    if len(found) > _LISTED:
        listed += f" and {len(found) - _LISTED} more ('vfiokit groups{again}' lists them)"
    return Ambiguous(f"'{word}' names {len(found)} devices{_where(top)}: {listed}", [d.address for d in found],
                     f"name one by its address, e.g. {_written(found[0].address, domain)}", word)


def resolve_word(word: str, top: Topology, again: str = "") -> list[PciAddress]:
    """The functions one word names (see the module doc); raises BadInput for a word of no known
    form, DeviceNotFound when it names nothing here, Ambiguous when it names several devices."""
    again = f" {again}" if again else ""
    t = word.strip().lower()
    try:
        place = _place(t)
    except BadInput:
        raise BadInput(f"'{word}' is not a PCI address ({ID_HINT})", device=word) from None
    if place is not None:
        addr, whole_slot = place
        if not whole_slot:
            if addr not in top.by_address:
                raise _not_found(word, f"no PCI device at {addr}", top, again, _nearest(addr, top))
            return [addr]
        found = [d.address for d in top.devices if d.address.same_slot(addr)]
        if not found:
            raise _not_found(word, f"no PCI device in slot {t}", top, again, _nearest(addr, top, slots=True))
        return found
    if m := _IDS_RE.match(t):
        vendor, device = int(m["vendor"], 16), int(m["device"], 16)
        hits = [d for d in top.devices if d.vendor_id == vendor and d.device_id == device and not d.is_bridge]
        return _one(word, hits, top, again, f"no device with ids {t}")
    if t in CLASS_WORDS:
        hits = [d for d in top.devices if CLASS_WORDS[t].matches(d)]
        return _one(word, hits, top, again, f"no {t} ({CLASS_WORDS[t].names})")
    if any(c in t for c in ":.") or t[:1].isdigit():
        raise BadInput(f"'{word}' is not a PCI address ({ID_HINT})", device=word)
    import difflib

    near = difflib.get_close_matches(t, list(CLASS_WORDS), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(near)}?" if near else None
    raise BadInput(f"'{word}' names no device: expected {FORMS}", hint=hint, device=word)


def _one(word: str, hits: list[Device], top: Topology, again: str, none: str) -> list[PciAddress]:
    """One device (with its slot's other functions that match too: a card's audio is not another
    GPU); several cards: ambiguous."""
    if not hits:
        raise _not_found(word, none, top, again, [])
    cards = {d.address.slot_id for d in hits}
    if len(cards) > 1:
        raise _many(word, hits, top, again)
    return [d.address for d in hits]


def resolve(words: Iterable[str], top: Topology, again: str = "") -> list[PciAddress]:
    """The functions all `words` name, in the order given, without repeats. A word may hold several,
    joined by `;`, `,` or spaces as in a Proxmox hostpci value (`01:00.0;02:00.0`)."""
    out: list[PciAddress] = []
    for part in _parts(words):
        out.extend(a for a in resolve_word(part, top, again) if a not in out)
    if not out:
        raise BadInput(f"no device given (expected {FORMS})")
    return out


def places(words: Iterable[str]) -> list[tuple[PciAddress, bool]] | None:
    """What `words` name without reading the host: per word, `_place` of it; None when a word is
    ids or a class word (only every device can say which it names) or no address at all
    (`resolve` says why)."""
    out = []
    for part in _parts(words):
        try:
            place = _place(part.lower())
        except BadInput:
            return None
        if place is None:
            return None
        out.append(place)
    return out


def _place(word: str) -> tuple[PciAddress, bool] | None:
    """The address a lowercase word in Proxmox's grammar names (qemu-server PVE/QemuServer/PCI.pm,
    two hex digits for bus and device, so what vfiokit accepts a hostpci line accepts too), and
    whether it names the whole slot (`04:00`, function 0 standing for it); None for a word of
    another form, BadInput for one of this form that is no address."""
    from vfiokit.formats.pve_hostpci import HOST_ID_RE  # here: `groups` imports this module for its filters

    m = HOST_ID_RE.fullmatch(word)
    if m is None:
        return None
    return PciAddress.parse(word if m[4] is not None else word + ".0"), m[4] is None


def _parts(words: Iterable[str]) -> Iterator[str]:
    """The device words of `words`: a word may hold several, joined by `;`, `,` or spaces as in a
    Proxmox hostpci value (`01:00.0;02:00.0`)."""
    for text in words:
        yield from filter(None, (p.strip() for p in re.split(r"[;,\s]+", text)))


def is_slot(word: str) -> bool:
    """The word names a whole slot (`04:00`), so Proxmox should pass all its functions."""
    from vfiokit.formats.pve_hostpci import HOST_ID_RE

    m = HOST_ID_RE.fullmatch(word.strip().lower())
    return m is not None and m[4] is None


def matching(top: Topology, word: str) -> list[Device]:
    """The devices of class word `word` (for filters: every match, no ambiguity)."""
    return [d for d in top.devices if CLASS_WORDS[word].matches(d)]


class GroupFilter(NamedTuple):
    """`groups` filters, as ls-iommu users expect them. A group is kept when one member matches
    every device filter given (class word, ids, driver) and the group filters (numbers, shared);
    it is then shown whole: what leaves the host with a device is its whole group."""

    class_word: str | None = None
    numbers: tuple[int, ...] = ()
    ids: str | None = None
    driver: str | None = None
    #: Only groups with more than one endpoint (bridges do not count: Proxmox leaves them alone).
    shared: bool = False

    @property
    def empty(self) -> bool:
        return self == GroupFilter()

    def device_matches(self, dev: Device) -> bool:
        if self.class_word is not None and not CLASS_WORDS[self.class_word].matches(dev):
            return False
        if self.ids is not None and dev.ids != self.ids.lower():
            return False
        return self.driver is None or dev.driver == self.driver


def parse_ids(text: str) -> str:
    """`10DE:1430` -> `10de:1430`; BadInput for anything else."""
    if not _IDS_RE.match(text.strip().lower()):
        raise BadInput(f"'{text}' is not vendor:device ids (expected vvvv:dddd, e.g. 10de:1430)")
    return text.strip().lower()


def select_groups(top: Topology, f: GroupFilter) -> Topology:
    """`top` with only the groups `f` keeps, and only their devices (devices in no group go too)."""
    if f.empty or top.groups is None:
        return top
    kept = []
    for g in top.groups:
        members = [top.by_address[a] for a in g.members if a in top.by_address]
        if f.numbers and g.number not in f.numbers:
            continue
        if f.shared and sum(not d.is_bridge for d in members) < 2:
            continue
        if any(f.device_matches(d) for d in members):
            kept.append(g)
    inside = {a for g in kept for a in g.members}
    return replace(top, devices=tuple(d for d in top.devices if d.address in inside), groups=tuple(kept),
                   group_unknown=frozenset())
