"""Pasted IOMMU listings: the text people post in forums and READMEs, read into a `Topology`.

A listing is what someone's script printed, often with the noise of a paste around it (prompts,
commands, markdown, colours, lines cut short). The reader is line-oriented: each line is cleaned
(ANSI colours, markdown quoting and bullets, tree drawing), then matched against a small set of
named patterns, one per thing a line can be:

- a group header: `IOMMU Group 3`, `IOMMU group 3:`, `IOMMU Group   3:` (ls-iommu pads with %3d),
  `### Group 3 ###`, `Group 3:`, a bare number under a tree drawing, `/sys/kernel/iommu_groups/3/devices:`;
- a device, either alone or after a group prefix on the same line:
  `lspci` style `BB:DD.F Class [cccc]: Vendor Device [vvvv:dddd] (rev xx)` with or without domain,
  class code, ids, colon after the class (ls-iommu has none) or revision; `lspci -n`
  (`BB:DD.F cccc: vvvv:dddd`); `lspci -mm` (quoted fields); the r15ch13 script
  (`[vvvv:dddd] [R] BB:DD.F  Class  Name` in columns); a `find /sys/kernel/iommu_groups/ -type l`
  path; a bare address (tree drawings, `ls -l` symlinks); an `lspci -vmm` record (`Slot:` ...
  `IOMMUGroup:`);
- a line about the device above: `Kernel driver in use:`, `Kernel modules:`, `Subsystem:`,
  `DeviceName:` (`lspci -k`, `ls-iommu -k`), `Flags: ... IOMMU group N` (`lspci -v`), `USB:` (r15ch13);
- a `pvesh get /nodes/X/hardware/pci` table (header row, borders, data rows);
- host facts: a kernel command line (`BOOT_IMAGE=...`, `root=...`, or the line after
  `cat /proc/cmdline`), `uname -a`/`-r` output, `/proc/version`;
- noise: prompts, commands, prose, markdown.

A listing has no config space: PCIe port types, ACS, the bridge above each device, multifunction
and reset ability are unknown (None), and the topology's notes say so. Names are kept as the
listing printed them (r15ch13's script prints only the device name; its vendor part is looked up
by id in pci.ids). Every line that holds a PCI address either becomes a device or is reported
with its line number and the reason it was kept out; a duplicated address or a listing without any
group is `BadInput`.
"""

from __future__ import annotations

import codecs
import re
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from vfiokit.errors import BadInput
from vfiokit.model import Device, Group, HostInfo, PciAddress, Topology

# --- the named patterns -------------------------------------------------------------------------

#: A PCI address as a token: optional domain, bus, device (0x00-0x1f), function.
_ADDR = r"(?:[0-9a-fA-F]{4,8}:)?[0-9a-fA-F]{2}:[01][0-9a-fA-F]\.[0-7]"
ADDRESS_TOKEN = re.compile(rf"(?<![\w:.]){_ADDR}(?![\w:])")
#: ANSI CSI sequences (colours: `ls --color`, lspci in a coloured prompt) and OSC titles.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
#: What a paste puts before the text: markdown quotes, bullets, tree drawing, inline code.
PREFIX = re.compile(r"^[\s>]*(?:[│├└┬┼─╰╭┃┣┗━|`'+*\-]+(?=[\s\w/\[]|$)\s*)*")
TREE_CHARS = re.compile(r"[│├└─┃┣┗━]|\|--|`--")
#: `IOMMU Group 3`, `IOMMU group 3:`, `Group 3:`, `### Group 3 ###`, `**IOMMU GROUP 3**`; what
#: follows the number is the rest of the line (a device on flat listings).
GROUP_PREFIX = re.compile(r"^[#*_\s]*(?:IOMMU\s*)?group\s+(?P<n>\d+)\b\s*:?(?P<rest>.*)$", re.I)
#: What may trail a header: markdown, punctuation, a parenthesised remark.
HEADER_TRAIL = re.compile(r"^[\s#*:=_`\-]*(?:\(.*\))?[\s#*:=_`\-]*$")
SYSFS_GROUP_DIR = re.compile(r"/sys/kernel/iommu_groups/(?P<n>\d+)(?:/devices)?/?:?\s*$")
SYSFS_DEVICE = re.compile(rf"/sys/kernel/iommu_groups/(?P<n>\d+)/devices/(?P<addr>{_ADDR})\b")
BARE_NUMBER = re.compile(r"^(?P<n>\d+)/?$")
SYMLINK = re.compile(rf"(?P<addr>{_ADDR})\s*->\s*\S+")
ADDR_FIRST = re.compile(rf"^(?P<addr>{_ADDR})(?![\w:])\s*(?P<rest>.*)$")
#: Shaped like an address at the start of a line but maybe out of range (device 0x20, function 8):
#: a typo to report with its line, not prose to pass over.
ADDR_SHAPED = re.compile(r"^(?P<addr>(?:[0-9a-fA-F]{4,8}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-9a-fA-F])(?![\w:.])")
R15CH13 = re.compile(
    rf"^\[(?P<v>[0-9a-fA-F]{{4}}):(?P<d>[0-9a-fA-F]{{4}})\]\s+(?P<reset>\[R\]\s+)?"
    rf"(?P<addr>{_ADDR})(?![\w:])\s*(?P<rest>.*)$"
)
USB_LINE = re.compile(r"^USB:\s")
DRIVER_LINE = re.compile(r"^Kernel driver in use:\s*(?P<driver>\S+)")
KMOD_LINE = re.compile(r"^Kernel modules:")
SUBSYSTEM_LINE = re.compile(
    r"^Subsystem:\s*(?P<text>.*?)(?:\s*\[(?P<v>[0-9a-f]{4}):(?P<d>[0-9a-f]{4})\])?\s*$", re.I)
#: `lspci -v`: "Flags: bus master, fast devsel, latency 0, IRQ 16, IOMMU group 13" (lspci.c show_verbose).
FLAGS_GROUP = re.compile(r"^Flags:.*\bIOMMU group (?P<n>\d+)")
#: `lspci -vmm` records (lspci.c show_machine): "Slot:\t01:00.0", "Class:\t...", ..., "IOMMUGroup:\t13".
VMM_FIELD = re.compile(r"^(?P<key>Slot|Class|Vendor|Device|SVendor|SDevice|Rev|ProgIf|Driver|Module|"
                       r"NUMANode|IOMMUGroup|PhySlot):\s+(?P<value>.*?)\s*$")
VMM_NAME = re.compile(r"^(?P<name>.*?)(?:\s*\[(?P<id>[0-9a-fA-F]{4})\])?$")
OTHER_K_LINE = re.compile(r"^(?:DeviceName|Physical Slot|Flags|Control|Status|Latency|Interrupt|"
                          r"Region \d|Capabilities|NUMA node|IOMMU group):", re.I)
# lspci line parts (pciutils ls-kernel.c / lspci.c show_terse): class, names, ids, revision, prog-if.
PROG_IF = re.compile(r"\s*\(prog-if (?P<p>[0-9a-fA-F]{2})(?: \[[^\]]*\])?\)\s*$")
REVISION = re.compile(r"\s*\(rev (?P<r>[0-9a-fA-F]{2})\)\s*$")
IDS_AT_END = re.compile(r"\s*\[(?P<v>[0-9a-fA-F]{4}):(?P<d>[0-9a-fA-F]{4})\]\s*$")
CLASS_NN = re.compile(r"^(?P<name>[^:\[\]]*?)\s*\[(?P<cc>[0-9a-fA-F]{4})\](?::\s*|\s+|$)(?P<rest>.*)$")
CLASS_TEXT = re.compile(r"^(?P<name>[^:\[\]]+?):\s+(?P<rest>.*)$")
NUMERIC = re.compile(r"^(?P<cc>[0-9a-fA-F]{4}):\s+(?P<v>[0-9a-fA-F]{4}):(?P<d>[0-9a-fA-F]{4})"
                     r"(?:\s+\(rev (?P<r>[0-9a-fA-F]{2})\))?")
MM_FIELDS = re.compile(r'"([^"]*)"|(-r[0-9a-fA-F]{2}|-p[0-9a-fA-F]{2})')
#: A line that stops before its end (a paste or a terminal cut it): an unclosed bracket or `...`.
CUT = re.compile(r"(?:\.\.\.|…)\s*$|\[[^\]]*$|\([^)]*$")
# Host facts.
CMDLINE = re.compile(r"(?:^|\s)(?:BOOT_IMAGE|root|initrd)=\S")
BOOT_IMAGE = re.compile(r"BOOT_IMAGE=\S*vmlinuz-(?P<rel>\S+)")
UNAME_A = re.compile(r"^Linux\s+\S+\s+(?P<rel>\d+\.\d+[\w.+~-]*)\s+#")
PROC_VERSION = re.compile(r"^Linux version (?P<rel>\d+\.\d+[\w.+~-]*)\s")
RELEASE = re.compile(r"^\d+\.\d+(?:\.\d+)?[\w.+~-]*$")
# Noise that explains itself.
PROMPT = re.compile(r"^(?:\([^)]*\)\s*)?(?:\[[^\]]*\]\s*)?[\w.-]+@[\w.-]+(?:[:\s][^$#%>]*)?\s?[$#%>]"
                    r"\s*(?P<cmd>.*)$|^(?:[$%]|PS [^>]*>|❯|➜)\s+(?P<cmd2>.*)$")
COMMAND = re.compile(r"^(?:sudo\s+)?(?:lspci|find|ls|for|do|done|echo|cat|uname|pvesh|bash|sh|"
                     r"shopt|while|if|then|fi|printf|\./\S+|\S+\.sh)\b")
FENCE = re.compile(r"^(```|~~~)")
#: What `tree` and `ls -l` print around the group folders' symlinks.
SYSFS_NOISE = re.compile(r"^(?:devices|reserved_regions|type|total \d+|\d+ director(?:y|ies), \d+ files?)$")
#: `vfiokit groups --format markdown`: `| group | address | lspci -nn text | driver | notes |`; group
#: `none` (in no group) or `?` (unknown); driver `—` (none bound) or `?` (unknown); `\|` escapes a pipe.
MARKDOWN_ROW = re.compile(rf"^\|\s*(?P<group>\d+|none|\?)\s*\|\s*(?P<addr>{_ADDR})\s*\|"
                          r"(?P<text>(?:[^|\\]|\\.)*)\|\s*`?(?P<driver>[^|`]*?)`?\s*\|.*$")
PVESH_BORDER = re.compile(r"^[\s┌┐└┘├┤┬┴┼─═╞╡╪╘╛╒╕╤╧.]+$")


# --- the result -----------------------------------------------------------------------------------



def _out_of_range(text: str) -> str | None:
    """Why a line that starts like an address is not one (`00:20.0`, `00:00.8`); None otherwise."""
    m = ADDR_SHAPED.match(GROUP_PREFIX.sub(lambda g: g["rest"].strip(), text, count=1))
    if not m:
        return None
    try:
        PciAddress.parse(m["addr"])
    except BadInput as e:
        return str(e)
    return None

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


# --- cleaning -------------------------------------------------------------------------------------


def _clean(raw: str) -> tuple[str, bool]:
    """The line without colours, paste prefixes and markdown wrapping; and whether it had tree drawing."""
    text = ANSI.sub("", raw).replace("\r", "").replace("\u00a0", " ")
    tree = bool(TREE_CHARS.search(text))
    text = PREFIX.sub("", text, count=1)
    text = text.strip().strip("`").strip()
    if text.startswith("**") or text.endswith("**"):
        text = text.strip("*").strip()
    return text, tree


# --- device text ----------------------------------------------------------------------------------


def _is_hex(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-fA-F]{1,2}", text))


def _int16(text: str | None) -> int | None:
    return None if text is None else int(text, 16)


def _split_names(text: str, vendor_id: int | None,
                 vendor_of: Callable[[int], str | None] | None,
                 vendor_names: Collection[str]) -> tuple[str | None, str | None]:
    """Split lspci's "vendor device" text (names.c format_name_pair joins them with a space).

    The vendor part is told apart with pci.ids' vendor names: by id when the line has one, else the
    longest known vendor name the text starts with. When none matches, the whole text is kept as the
    device name and the vendor stays unknown, so the line still renders exactly as it was pasted.
    """
    text = text.strip()
    if not text:
        return None, None
    candidates = []
    if vendor_id is not None and vendor_of is not None:
        name = vendor_of(vendor_id)
        if name:
            candidates.append(name)
    if vendor_names:
        words = text.split(" ")
        prefixes = [" ".join(words[:i]) for i in range(len(words), 0, -1)]
        candidates.extend(p for p in prefixes if p in vendor_names)
    for vendor in candidates:
        if text == vendor:
            return vendor, None
        if text.startswith(vendor + " "):
            return vendor, text[len(vendor) + 1:].strip() or None
    return None, text


class _Reader:
    """One pass over a listing's lines. Holds the group context and what was read so far."""

    def __init__(self, origin: str, vendor_of: Callable[[int], str | None] | None,
                 vendor_names: Collection[str]) -> None:
        self.origin = origin
        self.vendor_of = vendor_of
        self.vendor_names = vendor_names
        self.devices: dict[PciAddress, _Dev] = {}
        self.headers: dict[int, int] = {}  # group number -> line of its (first) header
        self.group: int | None = None
        self.last: _Dev | None = None
        self.skipped: list[Skipped] = []
        self.cut: list[Skipped] = []
        self.in_no_group: set[PciAddress] = set()  # pvesh's iommugroup -1: known to have none
        self.cmdline: str | None = None
        self.release: str | None = None
        self.expect: str | None = None  # "cmdline" / "release": what the previous command prints
        self.pvesh_columns: list[str] | None = None
        self.saw_k = False  # a `-k` listing: a device without a driver line has none bound
        self.with_reset_marks = False  # an r15ch13 listing: no [R] means no reset file
        self.record: _Dev | None = None  # the `lspci -vmm` record being read

    # -- line dispatch -----------------------------------------------------------------------------

    def line(self, number: int, raw: str) -> None:
        made = self._line(number, raw)
        # Every line holding an address is accounted for: a device, or reported with its reason.
        text = ANSI.sub("", raw)
        if made is not True and (ADDRESS_TOKEN.search(text) or (made and _out_of_range(_clean(raw)[0]))):
            self.skipped.append(Skipped(number, made or "not a device line the reader knows", raw))

    def _line(self, n: int, raw: str) -> bool | str | None:
        """Read one line. True: it gave a device; a string: why a line with an address was not read."""
        stripped = ANSI.sub("", raw).strip()
        # A table row has several filled cells; a tree drawing's `│   │   └──` has one at most.
        if stripped.startswith("│") and sum(1 for c in stripped.split("│") if c.strip()) >= 2:
            return self._pvesh_row(n, stripped)
        if PVESH_BORDER.match(stripped) and any(c in stripped for c in "┌├└╞"):
            return None
        if m := MARKDOWN_ROW.match(stripped):
            return self._markdown_row(n, raw, m)
        text, tree = _clean(raw)
        expect, self.expect = self.expect, None
        if not text:
            self.record = None  # lspci -vmm ends each record with a blank line
            return None
        if m := VMM_FIELD.match(text):
            return self._vmm(n, raw, m["key"], m["value"])
        if (m := FLAGS_GROUP.match(text)) and self.last is not None:
            self.last.fields["iommu_group"] = int(m["n"])
            return None
        if FENCE.match(text):
            self.group = None  # a code block ends: a device line after it is not guessed into a group
            return None
        if expect == "cmdline" and not ADDR_FIRST.match(text) and not GROUP_PREFIX.match(text):
            self.cmdline = text
            self._release_from_cmdline(text)
            # A command line may name devices (pci=disable_acs_redir=0000:00:02.0): said, not a device.
            return "a kernel command line" if ADDRESS_TOKEN.search(text) else None
        if expect == "release" and (m := RELEASE.match(text)):
            self.release = text
            return None
        if m := SYSFS_DEVICE.search(text):
            return self._add(n, raw, PciAddress.parse(m["addr"]), int(m["n"]), {})
        if (m := SYSFS_GROUP_DIR.search(text)) and not ADDRESS_TOKEN.search(text):
            return self._header(n, int(m["n"]))
        if tree and (m := BARE_NUMBER.match(text)):
            return self._header(n, int(m["n"]))
        if m := GROUP_PREFIX.match(text):
            rest = m["rest"].strip()
            if HEADER_TRAIL.match(rest):
                return self._header(n, int(m["n"]))
            if ADDRESS_TOKEN.search(rest) or rest.startswith("["):
                self.group = int(m["n"])  # r15ch13 continues a group on lines without the prefix
                return self._device(n, raw, rest, self.group)
            if bad := _out_of_range(rest):
                self._header(n, int(m["n"]))
                return bad
            return None  # prose that starts with "Group 3 ..."
        if m := DRIVER_LINE.match(text):
            self.saw_k = True
            if self.last is not None:
                self.last.fields["driver"] = m["driver"]
            return None
        if KMOD_LINE.match(text):
            self.saw_k = True
            return None
        if m := SUBSYSTEM_LINE.match(text):
            if self.last is not None and m["v"]:
                self.last.fields["subsystem_vendor_id"] = int(m["v"], 16)
                self.last.fields["subsystem_device_id"] = int(m["d"], 16)
            return None
        if OTHER_K_LINE.match(text) or USB_LINE.match(text) or SYSFS_NOISE.match(text):
            return None
        if (m := PROMPT.match(text)) and not ADDR_FIRST.match(text):
            self._command((m["cmd"] or m["cmd2"] or "").strip())
            self.group = None
            return "a shell prompt and command"
        if text.startswith("#"):
            self.group = None
            return "a comment or heading"
        if ADDR_FIRST.match(text) or R15CH13.match(text):
            return self._device(n, raw, text, self.group)
        if m := SYMLINK.search(text):
            return self._add(n, raw, PciAddress.parse(m["addr"]), self.group, {})
        if COMMAND.match(text):
            self._command(text)
            self.group = None
            return "a shell command"
        if CMDLINE.search(text):
            self.cmdline = text
            self._release_from_cmdline(text)
            return "a kernel command line"
        if (m := UNAME_A.match(text)) or (m := PROC_VERSION.match(text)):
            self.release = m["rel"]
            return "uname output"
        if ADDRESS_TOKEN.search(text):
            return "not a device line the reader knows"
        return _out_of_range(text)

    def _command(self, cmd: str) -> None:
        if re.search(r"\bcat\s+/proc/cmdline\b", cmd) and not re.search(r"[;|&]", cmd.split("cmdline", 1)[1]):
            self.expect = "cmdline"
        elif re.match(r"^(?:sudo\s+)?uname\s+-r\b", cmd):
            self.expect = "release"

    def _release_from_cmdline(self, text: str) -> None:
        # GRUB passes the path of the kernel image it loaded as BOOT_IMAGE (grub-core/loader/linux.c);
        # Debian, Ubuntu and Proxmox name it vmlinuz-<release>.
        if self.release is None and (m := BOOT_IMAGE.search(text)):
            self.release = m["rel"]

    def _header(self, n: int, number: int) -> None:
        self.group = number
        self.headers.setdefault(number, n)
        self.last = None
        return None

    # -- devices -----------------------------------------------------------------------------------

    def _vmm(self, n: int, raw: str, key: str, value: str) -> bool | str | None:
        """One `Key:\tvalue` line of `lspci -vmm` (with -nn the names carry `[id]`)."""
        if key == "Slot":
            if not ADDR_FIRST.match(value):
                return "an lspci -vmm Slot line without a readable address"
            result = self._add(n, raw, PciAddress.parse(value.split()[0]), None, {})
            self.record = self.last
            return result
        rec = self.record
        if rec is None:
            return None
        f = rec.fields
        name = VMM_NAME.match(value)
        text, ident = name["name"], _int16(name["id"])
        if key == "Class":
            f["class_name"] = text
            if ident is not None:
                f["class_code"] = ident << 8 | int(f.pop("prog_if", 0))  # type: ignore[call-overload]
        elif key in ("Vendor", "Device", "SVendor", "SDevice"):
            prefix = {"Vendor": "vendor", "Device": "device", "SVendor": "subsystem_vendor",
                      "SDevice": "subsystem_device"}[key]
            if key in ("Vendor", "Device"):
                f[f"{prefix}_name"] = text
            if ident is not None:
                f[f"{prefix}_id"] = ident
        elif key == "Rev" and _is_hex(value):
            f["revision"] = int(value, 16)
        elif key == "ProgIf" and _is_hex(value):
            if f.get("class_code") is not None:
                f["class_code"] = int(f["class_code"]) & ~0xFF | int(value, 16)  # type: ignore[call-overload]
            else:
                f["prog_if"] = int(value, 16)
        elif key in ("Driver", "Module"):
            self.saw_k = True
            if key == "Driver":
                f["driver"] = value
        elif key == "IOMMUGroup" and value.isdigit():
            f["iommu_group"] = int(value)
        return None

    def _device(self, n: int, raw: str, text: str, group: int | None) -> bool | str:
        if m := R15CH13.match(text):
            self.with_reset_marks = True
            vid = int(m["v"], 16)
            fields: dict[str, object] = {"vendor_id": vid, "device_id": int(m["d"], 16),
                                         "has_reset": bool(m["reset"])}
            rest = m["rest"].strip()
            if re.search(r"\s{2,}|\t", rest) or not rest:
                self._columns(rest, fields)
            elif not self._lspci(n, raw, rest, fields):  # Unraid's page: `[ids] BB:DD.F Class: Name`
                return "the device text after the address is not readable"
            # The script prints only the device name (lspci -mm field 3); the vendor part of the
            # name comes from pci.ids by id, as lspci itself would have named it.
            if self.vendor_of is not None:
                fields["vendor_name"] = self.vendor_of(vid)
            return self._add(n, raw, PciAddress.parse(m["addr"]), group, fields)
        if m := SYSFS_DEVICE.search(text):
            return self._add(n, raw, PciAddress.parse(m["addr"]), int(m["n"]), {})
        m = ADDR_FIRST.match(text)
        if not m:
            return "a group line whose device part is not readable"
        addr = PciAddress.parse(m["addr"])
        rest = m["rest"]
        if not rest or rest.startswith("->"):
            return self._add(n, raw, addr, group, {})
        fields = {}
        ok = self._mm(rest, fields) if rest.startswith('"') else self._lspci(n, raw, rest, fields)
        if not ok:
            return "the device text after the address is not readable"
        return self._add(n, raw, addr, group, fields)

    def _columns(self, rest: str, fields: dict[str, object]) -> None:
        """r15ch13: `Class<padded to 40> Name` (printf "%s %-40s %s" of lspci -mm fields)."""
        parts = re.split(r"\s{2,}|\t+", rest, maxsplit=1)
        if parts and parts[0]:
            fields["class_name"] = parts[0].strip()
        if len(parts) > 1 and parts[1].strip():
            fields["device_name"] = parts[1].strip()

    def _mm(self, rest: str, fields: dict[str, object]) -> bool:
        """`lspci -mm`: "class" "vendor" "device" [-rXX] [-pXX] "subvendor" "subdevice"."""
        quoted = []
        for q, opt in MM_FIELDS.findall(rest):
            if opt:
                key = "revision" if opt[1] == "r" else "prog_if"
                fields[key] = int(opt[2:], 16)
            else:
                quoted.append(q)
        if len(quoted) < 3:
            return False
        names = []
        for q in quoted[:3]:
            m = re.match(r"^(?P<t>.*?)\s*\[(?P<id>[0-9a-fA-F]{4})\]$", q)
            names.append((m["t"], int(m["id"], 16)) if m else (q, None))
        fields["class_name"], cc = names[0]
        fields["vendor_name"], fields["vendor_id"] = names[1]
        fields["device_name"], fields["device_id"] = names[2]
        if cc is not None:
            fields["class_code"] = cc << 8 | int(fields.pop("prog_if", 0))  # type: ignore[call-overload]
        fields.pop("prog_if", None)
        return True

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
            self.cut.append(Skipped(n, "cut short, what follows is unknown", raw))
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
        vendor, device = _split_names(names, fields.get("vendor_id"),  # type: ignore[arg-type]
                                      self.vendor_of, self.vendor_names)
        fields["vendor_name"], fields["device_name"] = vendor, device
        return True

    def _add(self, n: int, raw: str, addr: PciAddress, group: int | None, fields: dict[str, object]) -> bool:
        if addr in self.devices:
            raise BadInput(f"{self.origin}: line {n}: {addr} is listed twice "
                           f"(first at line {self.devices[addr].line}); one listing per paste")
        fields["iommu_group"] = group
        dev = _Dev(n, fields)
        self.devices[addr] = dev
        self.last = dev
        return True

    def _markdown_row(self, n: int, raw: str, m: re.Match[str]) -> bool | str:
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
        return self._add(n, raw, addr, int(m["group"]) if m["group"].isdigit() else None, fields)

    # -- pvesh -------------------------------------------------------------------------------------

    def _pvesh_row(self, n: int, text: str) -> bool | str | None:
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
        return self._add(n, text, addr, group if group is not None and group >= 0 else None, fields)

    # -- the model ---------------------------------------------------------------------------------

    def topology(self) -> tuple[Topology, dict[PciAddress, int]]:
        devices = []
        members: dict[int, list[PciAddress]] = {}
        for addr, d in sorted(self.devices.items()):
            f = dict(d.fields)
            f.pop("prog_if", None)  # a ProgIf line without a class code: nowhere to keep it
            if self.saw_k and "driver" not in f:
                f["driver"] = ""  # lspci -k / ls-iommu -k print the line only when a driver is bound
            if not self.with_reset_marks:
                f.pop("has_reset", None)
            devices.append(Device(address=addr, **f))  # type: ignore[arg-type]
            if d.fields.get("iommu_group") is not None:
                members.setdefault(int(d.fields["iommu_group"]), []).append(addr)  # type: ignore[call-overload]
        empty = sorted(set(self.headers) - set(members))
        if not members:
            where = f" ({len(devices)} device lines, none under a group)" if devices else ""
            raise BadInput(f"{self.origin}: no IOMMU group found{where}; expected lines such as "
                           f"'IOMMU Group 1' or 'IOMMU Group 1 01:00.0 ...' (the output of the script "
                           f"that walks /sys/kernel/iommu_groups)")
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
        return tuple(notes)


def parse(text: str, origin: str = "listing",
          vendor_of: Callable[[int], str | None] | None = None,
          vendor_names: Collection[str] = ()) -> ListingRead:
    """Read a pasted listing. `vendor_of`/`vendor_names` (from pci.ids) only split "vendor device"
    names; groups, addresses, ids and classes never depend on them. Raises BadInput only."""
    reader = _Reader(origin, vendor_of, vendor_names)
    for number, raw in enumerate(text.splitlines(), 1):
        reader.line(number, raw)
    top, lines = reader.topology()
    return ListingRead(top, lines, tuple(reader.skipped), tuple(reader.cut))


def read_text(text: str, origin: str) -> ListingRead:
    """`parse` with the system's pci.ids to tell vendor names from device names."""
    from vfiokit.pciids import PciIds

    ids = PciIds.system()
    return parse(text, origin, ids.vendor, ids.vendor_names())


def load(path: str) -> Topology:
    """Read a listing file (`-`: standard input); BadInput names the file when it cannot be read."""
    try:
        if path == "-":
            text, origin = sys.stdin.read(), "listing <stdin>"
        else:
            with open(path, "rb") as f:
                data, origin = f.read(), f"listing {path}"
            # Windows PowerShell's `>` writes UTF-16 with a byte order mark; Notepad UTF-8 with one.
            utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
            text = data.decode("utf-16" if utf16 else "utf-8-sig", errors="replace")
    except OSError as e:
        raise BadInput(f"{path}: cannot read listing ({e.strerror})") from None
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise BadInput(f"{path}: not a text listing (binary data)")
    return read_text(text, origin).topology


