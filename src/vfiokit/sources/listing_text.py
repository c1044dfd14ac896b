"""The listing reader's vocabulary: the named patterns a pasted line is matched against, and the pure
text helpers that take a device line apart (no state, no I/O). `listing.py` reads a listing with
them; `listing_lines.py` holds the ordered table of line kinds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

from vfiokit.errors import BadInput
from vfiokit.model import PciAddress

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


def out_of_range(text: str) -> str | None:
    """Why a line that starts like an address is not one (`00:20.0`, `00:00.8`); None otherwise."""
    m = ADDR_SHAPED.match(GROUP_PREFIX.sub(lambda g: g["rest"].strip(), text, count=1))
    if not m:
        return None
    try:
        PciAddress.parse(m["addr"])
    except BadInput as e:
        return str(e)
    return None


# --- cleaning --------------------------------------------------------------------------------------


def clean(raw: str) -> tuple[str, bool]:
    """The line without colours, paste prefixes and markdown wrapping; and whether it had tree drawing."""
    text = ANSI.sub("", raw).replace("\r", "").replace("\u00a0", " ")
    tree = bool(TREE_CHARS.search(text))
    text = PREFIX.sub("", text, count=1)
    text = text.strip().strip("`").strip()
    if text.startswith("**") or text.endswith("**"):
        text = text.strip("*").strip()
    return text, tree


# --- device text ----------------------------------------------------------------------------------


def is_hex(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-fA-F]{1,2}", text))


def int16(text: str | None) -> int | None:
    return None if text is None else int(text, 16)


def split_names(text: str, vendor_id: int | None,
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


def columns(rest: str, fields: dict[str, object]) -> None:
    """r15ch13: `Class<padded to 40> Name` (printf "%s %-40s %s" of lspci -mm fields)."""
    parts = re.split(r"\s{2,}|\t+", rest, maxsplit=1)
    if parts and parts[0]:
        fields["class_name"] = parts[0].strip()
    if len(parts) > 1 and parts[1].strip():
        fields["device_name"] = parts[1].strip()

def mm_fields(rest: str, fields: dict[str, object]) -> bool:
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
