"""The reader of a pasted listing: one pass over its lines (`Reader`, which the line kinds of
`listing_lines` drive), what it keeps (`ListingRead`, `Skipped`) and its documented limits.
`listing.py` is the door: it feeds lines to a `Reader` and loads files."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from vfiokit.errors import BadInput
from vfiokit.model import Device, Group, HostInfo, PciAddress, Topology
from vfiokit.sources.listing_lines import KINDS, NOT_MINE, RAW_KINDS, Line
from vfiokit.sources.listing_text import (
    ADDR_FIRST,
    ADDRESS_TOKEN,
    ANSI,
    BOOT_IMAGE,
    CLASS_NN,
    CLASS_TEXT,
    CUT,
    IDS_AT_END,
    NUMERIC,
    PREFIXED,
    PROG_IF,
    R15CH13,
    REVISION,
    SYSFS_DEVICE,
    clean,
    columns,
    mm_fields,
    out_of_range,
    split_names,
)

#: The longest line a listing may hold, in characters. The widest real line (`lspci -nnk -vv`'s
#: capability dumps, a pvesh table of long names) is a few hundred; a longer one is not a listing.
MAX_LINE = 16384
#: What a kept-out line keeps of its text (`Skipped.text`): notes show 70 characters, so a paste of
#: a million unreadable lines holds a million short strings, not the whole paste twice.
KEPT_TEXT = 200
#: The most devices a listing may hold: a whole PCI domain (256 buses x 32 devices x 8 functions).
#: The largest real hosts have a few thousand; past this a paste is not one machine's listing, and
#: modelling it would take about 1 KB of memory per device.
MAX_DEVICES = 65536
#: Lines kept out that are remembered one by one (`ListingRead.skipped`, one note each); the rest
#: are counted in one note.
MAX_KEPT_OUT = 1000
#: How many distinct "vendor device" texts the reader remembers the split of.
NAMES_KEPT = 4096

# --- the result -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """A line kept out of the model: its number (1-based), why, and its text."""

    line: int
    reason: str
    text: str

    def __str__(self) -> str:
        text = self.text if len(self.text) <= 70 else self.text[:67] + "..."
        return f"line {self.line}: {self.reason}: {text.strip()}"


@dataclass(frozen=True)
class ListingRead:
    """What the reader made of a listing: the model, where each device came from, what it left out."""

    topology: Topology
    #: The line (1-based) each device was read from.
    lines: dict[PciAddress, int]
    #: Lines holding an address that did not become a device, and lines the reader could not read.
    skipped: tuple[Skipped, ...]
    #: Lines read although cut short (what followed the cut, often the ids, is unknown).
    cut: tuple[Skipped, ...] = ()


@dataclass
class _Dev:
    """A device being read: model fields plus where it came from."""

    line: int
    fields: dict[str, object] = field(default_factory=dict)



class Reader:
    """One pass over a listing's lines. Holds the group context and what was read so far."""

    def __init__(self, origin: str, vendor_of: Callable[[int], str | None] | None,
                 vendor_names: Collection[str],
                 class_of: Callable[[str], int | None] | None = None) -> None:
        self.origin = origin
        #: The file the listing came from ("listing FILE" origins), for errors' `file` field.
        self.file = origin.removeprefix("listing ") if origin.startswith("listing ") else None
        self.class_of = class_of
        self.vendor_of = vendor_of
        self.vendor_names = vendor_names
        self.devices: dict[PciAddress, _Dev] = {}
        self.headers: dict[int, int] = {}  # group number -> line of its (first) header
        self.group: int | None = None
        self.last: _Dev | None = None
        self.skipped: list[Skipped] = []
        self.more_kept_out = 0  # lines kept out past MAX_KEPT_OUT
        self.cut: list[Skipped] = []
        self.in_no_group: set[PciAddress] = set()  # pvesh's iommugroup -1: known to have none
        self.cmdline: str | None = None
        self.release: str | None = None
        self.expect: str | None = None  # "cmdline" / "release": what the previous command prints
        self.pvesh_columns: list[str] | None = None
        self.saw_k = False  # a `-k` listing: a device without a driver line has none bound
        self.with_reset_marks = False  # an r15ch13 listing: no [R] means no reset file
        self.record: _Dev | None = None  # the `lspci -vmm` record being read
        self.classes_from_names = 0
        # split_names by (text, vendor id): a listing repeats the same few names on many lines.
        self.names: dict[tuple[str, int | None], tuple[str | None, str | None]] = {}

    # -- line dispatch -----------------------------------------------------------------------------

    def line(self, number: int, raw: str) -> None:
        if len(raw) > MAX_LINE:
            raise BadInput(f"{self.origin}: line {number} is {len(raw)} characters long; a listing line "
                           f"holds at most {MAX_LINE} (is this the output of an IOMMU listing?)")
        made = self._line(number, raw)
        if made is True:
            return
        # Every line holding an address is accounted for: a device, or reported with its reason.
        text = ANSI.sub("", raw) if "\x1b" in raw else raw
        if ADDRESS_TOKEN.search(text) or (made and out_of_range(clean(raw)[0])):
            if len(self.skipped) >= MAX_KEPT_OUT:
                self.more_kept_out += 1
                return
            self.skipped.append(Skipped(number, made or "not a device line the reader knows", raw[:KEPT_TEXT]))

    def _line(self, n: int, raw: str) -> bool | str | None:
        """Read one line with the first kind of `listing_lines` that claims it. True: it gave a
        device; a string: why a line with an address was not read."""
        stripped = (ANSI.sub("", raw) if "\x1b" in raw else raw).strip()
        ln = Line(n, raw, stripped)
        for kind in RAW_KINDS:
            if (result := kind(self, ln)) is not NOT_MINE:
                return result  # type: ignore[return-value]
        text, tree = clean(raw)
        expect, self.expect = self.expect, None
        ln = Line(n, raw, stripped, text, tree, expect)
        for kind in KINDS:
            if (result := kind(self, ln)) is not NOT_MINE:
                return result  # type: ignore[return-value]
        return None

    def command(self, cmd: str) -> None:
        if re.search(r"\bcat\s+/proc/cmdline\b", cmd) and not re.search(r"[;|&]", cmd.split("cmdline", 1)[1]):
            self.expect = "cmdline"
        elif re.match(r"^(?:sudo\s+)?uname\s+-r\b", cmd):
            self.expect = "release"

    def release_from_cmdline(self, text: str) -> None:
        # GRUB passes the path of the kernel image it loaded as BOOT_IMAGE (grub-core/loader/linux.c);
        # Debian, Ubuntu and Proxmox name it vmlinuz-<release>.
        if self.release is None and (m := BOOT_IMAGE.search(text)):
            self.release = m["rel"]

    def header(self, n: int, number: int) -> None:
        self.group = number
        self.headers.setdefault(number, n)
        self.last = None
        return None

    # -- devices -----------------------------------------------------------------------------------

    def device(self, n: int, raw: str, text: str, group: int | None) -> bool | str:
        if m := R15CH13.match(text):
            self.with_reset_marks = True
            vid = int(m["v"], 16)
            fields: dict[str, object] = {"vendor_id": vid, "device_id": int(m["d"], 16),
                                         "has_reset": bool(m["reset"])}
            rest = m["rest"].strip()
            if re.search(r"\s{2,}|\t", rest) or not rest:
                columns(rest, fields)
            elif not self._lspci(n, raw, rest, fields):  # Unraid's page: `[ids] BB:DD.F Class: Name`
                return "the device text after the address is not readable"
            # The script prints only the device name (lspci -mm field 3); the vendor part of the
            # name comes from pci.ids by id, as lspci itself would have named it.
            if self.vendor_of is not None:
                fields["vendor_name"] = self.vendor_of(vid)
            return self.add(n, raw, PciAddress.parse(m["addr"]), group, fields)
        if m := SYSFS_DEVICE.search(text):
            return self.add(n, raw, PciAddress.parse(m["addr"]), int(m["n"]), {})
        m = ADDR_FIRST.match(text)
        if not m and (p := PREFIXED.match(text)) and not ADDRESS_TOKEN.search(p["prefix"]):
            m = ADDR_FIRST.match(p["dev"])  # `IOMMU Group 3: [3] 01:00.0 ...`
        if not m:
            return "a group line whose device part is not readable"
        addr = PciAddress.parse(m["addr"])
        rest = m["rest"]
        if not rest or rest.startswith("->"):
            return self.add(n, raw, addr, group, {})
        fields = {}
        ok = mm_fields(rest, fields) if rest.startswith('"') else self._lspci(n, raw, rest, fields)
        if not ok:
            return "the device text after the address is not readable"
        return self.add(n, raw, addr, group, fields)


    def _lspci(self, n: int, raw: str, rest: str, fields: dict[str, object]) -> bool:
        """`Class [cccc]: Vendor Device [vvvv:dddd] (rev xx) (prog-if xx [...])` and its variants."""
        if m := NUMERIC.match(rest):
            fields["class_code"] = int(m["cc"], 16) << 8
            fields["vendor_id"], fields["device_id"] = int(m["v"], 16), int(m["d"], 16)
            if m["r"]:
                fields["revision"] = int(m["r"], 16)
            return True
        cut = CUT.search(rest)
        if cut:
            self.cut.append(Skipped(n, "cut short, what follows is unknown", raw[:KEPT_TEXT]))
            rest = rest[:cut.start()].rstrip()
        prog_if = None
        if m := PROG_IF.search(rest):
            prog_if = int(m["p"], 16)
            rest = rest[:m.start()]
        if m := REVISION.search(rest):
            fields["revision"] = int(m["r"], 16)
            rest = rest[:m.start()]
        m = CLASS_NN.match(rest)
        if m and m["name"]:
            fields["class_name"] = m["name"].strip()
            fields["class_code"] = int(m["cc"], 16) << 8 | (prog_if or 0)
        elif (m := CLASS_TEXT.match(rest)) is not None:
            fields["class_name"] = m["name"].strip()
        elif cut:
            fields["class_name"] = rest.strip() or None
            return True
        else:
            return False
        names = m["rest"]
        if ids := IDS_AT_END.search(names):
            fields["vendor_id"], fields["device_id"] = int(ids["v"], 16), int(ids["d"], 16)
            names = names[:ids.start()]
        key = (names, fields.get("vendor_id"))
        split = self.names.get(key)  # type: ignore[arg-type]
        if split is None:
            split = split_names(names, key[1], self.vendor_of, self.vendor_names)  # type: ignore[arg-type]
            if len(self.names) < NAMES_KEPT:
                self.names[key] = split  # type: ignore[index]
        vendor, device = split
        fields["vendor_name"], fields["device_name"] = vendor, device
        return True

    def add(self, n: int, raw: str, addr: PciAddress, group: int | None, fields: dict[str, object]) -> bool:
        if addr in self.devices:
            raise BadInput(f"{self.origin}: line {n}: {addr} is listed twice "
                           f"(first at line {self.devices[addr].line}); one listing per paste",
                           file=self.file, line=n, device=str(addr))
        if len(self.devices) >= MAX_DEVICES:
            raise BadInput(f"{self.origin}: line {n}: more than {MAX_DEVICES} devices, a whole PCI domain; "
                           f"a listing holds one machine's devices", file=self.file, line=n)
        fields["iommu_group"] = group
        dev = _Dev(n, fields)
        self.devices[addr] = dev
        self.last = dev
        return True

    def markdown_row(self, n: int, raw: str, m: re.Match[str]) -> bool | str:
        """One row of `groups --format markdown`."""
        fields: dict[str, object] = {}
        text = re.sub(r"\\(.)", r"\1", m["text"]).strip()
        if text and not self._lspci(n, raw, text, fields):
            return "the device text after the address is not readable"
        if m["driver"] != "?":
            self.saw_k = True
            fields["driver"] = "" if m["driver"] == "—" else m["driver"]
        addr = PciAddress.parse(m["addr"])
        if m["group"] == "none":
            self.in_no_group.add(addr)
        return self.add(n, raw, addr, int(m["group"]) if m["group"].isdigit() else None, fields)

    # -- pvesh -------------------------------------------------------------------------------------

    def pvesh_row(self, n: int, text: str) -> bool | str | None:
        """`pvesh get /nodes/X/hardware/pci`: columns named by the header row (PVE API2/Hardware/PCI.pm)."""
        cells = [c.strip() for c in text.strip().strip("│").split("│")]
        if "id" in cells and "iommugroup" in cells:
            self.pvesh_columns = cells
            return None
        if self.pvesh_columns is None:
            return "a table row before the table's header row (pvesh columns unknown)"
        row = dict(zip(self.pvesh_columns, cells, strict=False))
        try:
            addr = PciAddress.parse(row.get("id", ""))
        except BadInput:
            return "a table row without a readable id column"
        group_text = row.get("iommugroup", "")
        group = int(group_text) if re.fullmatch(r"-?\d+", group_text) else None
        fields: dict[str, object] = {}
        for key, col in (("class_code", "class"), ("vendor_id", "vendor"), ("device_id", "device"),
                         ("subsystem_vendor_id", "subsystem_vendor"),
                         ("subsystem_device_id", "subsystem_device")):
            if re.fullmatch(r"0x[0-9a-fA-F]+", row.get(col, "")):
                fields[key] = int(row[col], 16)
        for key in ("vendor_name", "device_name"):
            if row.get(key):
                fields[key] = row[key]
        # The API reports -1 for a device without a group.
        if group is not None and group < 0:
            self.in_no_group.add(addr)
        return self.add(n, text, addr, group if group is not None and group >= 0 else None, fields)

    # -- the model ---------------------------------------------------------------------------------

    def topology(self) -> tuple[Topology, dict[PciAddress, int]]:
        devices = []
        members: dict[int, list[PciAddress]] = {}
        for addr, d in sorted(self.devices.items(), key=lambda item: item[0]):
            f = dict(d.fields)
            f.pop("prog_if", None)  # a ProgIf line without a class code: nowhere to keep it
            if self.saw_k and "driver" not in f:
                f["driver"] = ""  # lspci -k / ls-iommu -k print the line only when a driver is bound
            if not self.with_reset_marks:
                f.pop("has_reset", None)
            # Plain `lspci` prints the class name without `[cccc]`; the name is pci.ids' own, so its
            # number comes back from the same table (the programming interface does not).
            class_id = (self.class_of(str(f["class_name"])) if f.get("class_code") is None
                        and f.get("class_name") and self.class_of is not None else None)
            if class_id is not None:
                f["class_code"] = class_id << 8
                self.classes_from_names += 1
            devices.append(Device(address=addr, **f))  # type: ignore[arg-type]
            if d.fields.get("iommu_group") is not None:
                members.setdefault(int(d.fields["iommu_group"]), []).append(addr)  # type: ignore[call-overload]
        empty = sorted(set(self.headers) - set(members))
        if not members and self.headers:
            first = min(self.headers.values())
            looked = next((s for s in self.skipped if ADDRESS_TOKEN.search(ANSI.sub("", s.text))), None)
            seen = f"; the first line that looked like a device: {looked}" if looked else \
                "; no line under them holds a PCI address"
            raise BadInput(f"{self.origin}: {len(self.headers)} IOMMU group header(s) found (the first "
                           f"at line {first}) but no device line was read under them{seen}")
        if not members:
            where = f" ({len(devices)} device lines, none under a group)" if devices else ""
            raise BadInput(f"{self.origin}: no IOMMU group found{where}; expected lines such as "
                           f"'IOMMU Group 1' or 'IOMMU Group 1 01:00.0 ...' (the output of the script "
                           f"that walks /sys/kernel/iommu_groups)", file=self.file)
        groups = tuple(Group(k, tuple(sorted(v))) for k, v in sorted(members.items()))
        top = Topology(
            devices=tuple(devices),
            groups=groups,
            host=HostInfo(kernel_release=self.release, cmdline=self.cmdline),
            source=self.origin,
            notes=self._notes(devices, empty),
            group_unknown=frozenset(d.address for d in devices
                                    if d.iommu_group is None and d.address not in self.in_no_group),
        )
        return top, {a: d.line for a, d in self.devices.items()}

    def _notes(self, devices: list[Device], empty: list[int]) -> tuple[str, ...]:
        notes = ["a pasted listing has no config space: PCIe port types, ACS, the bridge above each "
                 "device, multifunction and reset ability are unknown"]
        if not self.saw_k:
            notes.append("drivers are unknown: the listing does not show them "
                         "(lspci -k or ls-iommu -k output includes them)")
        no_ids = sum(1 for d in devices if d.vendor_id is None)
        if no_ids:
            why = " (the listing does not show [vvvv:dddd]; lspci -nn does)" if no_ids == len(devices) else ""
            notes.append(f"vendor:device ids unknown for {no_ids} of {len(devices)} devices{why}")
        no_class = sum(1 for d in devices if d.class_code is None)
        if no_class:
            notes.append(f"class codes unknown for {no_class} of {len(devices)} devices")
        if self.classes_from_names:
            notes.append(f"class codes of {self.classes_from_names} device(s) read from their class names "
                         "(pci.ids' class table; the programming interface is unknown)")
        ungrouped = [d for d in devices if d.iommu_group is None and d.address not in self.in_no_group]
        if ungrouped:
            notes.append(f"{len(ungrouped)} device(s) listed outside any group, group unknown: "
                         + ", ".join(d.address.short for d in ungrouped[:6])
                         + (" ..." if len(ungrouped) > 6 else ""))
        bridges = any(d.class_id is not None and d.class_id >> 8 == 0x06 for d in devices)
        if self.pvesh_columns is not None and not bridges:
            notes.append("the pvesh table shows no bridge: pvesh hides classes 05, 06 and 0b unless run "
                         "with --pci-class-blacklist \"\", so groups may lack members")
        for number in empty:
            notes.append(f"line {self.headers[number]}: group {number} has no readable device, left out")
        notes.extend(str(s) for s in self.cut)
        notes.extend(str(s) for s in self.skipped if not s.reason.startswith(("a comment", "a shell")))
        if self.more_kept_out:
            notes.append(f"{self.more_kept_out} more lines holding an address kept out (only the first "
                         f"{MAX_KEPT_OUT} are listed)")
        return tuple(notes)
