"""The kinds of line a pasted listing holds, as an ordered table: the first kind that claims a
line reads it.

Each kind is a small function `(reader, line) -> result`, named after what it reads and with an
example line in its docstring. It returns `NOT_MINE` to let the next kind try; otherwise its
result is the reader's: True (the line gave a device), a string (why a line holding an address
was not read) or None (read, nothing to report). The order is part of the grammar: a kind placed
earlier wins (a `Flags:` line with a group is read before the `lspci -v` noise that also starts
with `Flags:`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vfiokit.model import PciAddress
from vfiokit.sources.listing_text import (
    ADDR_FIRST,
    ADDRESS_TOKEN,
    BARE_NUMBER,
    CMDLINE,
    COMMAND,
    DRIVER_LINE,
    FENCE,
    FLAGS_GROUP,
    GROUP_PREFIX,
    HEADER_TRAIL,
    KMOD_LINE,
    MARKDOWN_ROW,
    OTHER_K_LINE,
    PREFIXED,
    PROC_VERSION,
    PROMPT,
    PVESH_BORDER,
    R15CH13,
    RELEASE,
    SUBSYSTEM_LINE,
    SYMLINK,
    SYSFS_DEVICE,
    SYSFS_GROUP_DIR,
    SYSFS_NOISE,
    UNAME_A,
    UNAME_PROSE,
    USB_LINE,
    VMM_FIELD,
    VMM_NAME,
    int16,
    is_hex,
    out_of_range,
)

if TYPE_CHECKING:
    from vfiokit.sources.listing_reader import Reader


@dataclass(frozen=True)
class Line:
    """One line of a listing: its number, raw text, text without colours (`stripped`), cleaned text
    (`text`, see `listing_text.clean`), whether it had tree drawing, and what the command on the
    line before announced ("cmdline" / "release" / None)."""

    n: int
    raw: str
    stripped: str
    text: str = ""
    tree: bool = False
    expect: str | None = None


#: A kind's answer "not a line of my kind": the next kind tries.
NOT_MINE = object()
Matcher = Callable[["Reader", Line], object]


# --- kinds read on the raw line (before cleaning: their borders are what cleaning removes) -------

def pvesh_row(r: Reader, ln: Line) -> object:
    """A `pvesh get /nodes/X/hardware/pci` table row: `│ 0x030000 │ 0000:01:00.0 │ 13 │ ...`.

    A row has several filled cells; a tree drawing's `│   │   └──` has one at most."""
    if ln.stripped.startswith("│") and sum(1 for c in ln.stripped.split("│") if c.strip()) >= 2:
        return r.pvesh_row(ln.n, ln.stripped)
    return NOT_MINE


def pvesh_border(r: Reader, ln: Line) -> object:
    """A pvesh table border: `┌──────────┬──────────────┐`."""
    return None if PVESH_BORDER.match(ln.stripped) and any(c in ln.stripped for c in "┌├└╞") else NOT_MINE


def markdown_row(r: Reader, ln: Line) -> object:
    """A row of `vfiokit groups --format markdown`: `| 13 | 01:00.0 | VGA compatible controller
    [0300]: NVIDIA ... [10de:1c82] (rev a1) | `nouveau` | |`."""
    m = MARKDOWN_ROW.match(ln.stripped)
    return NOT_MINE if m is None else r.markdown_row(ln.n, ln.raw, m)


RAW_KINDS: tuple[Matcher, ...] = (pvesh_row, pvesh_border, markdown_row)


# --- kinds read on the cleaned line ------------------------------------------------------------

def blank(r: Reader, ln: Line) -> object:
    """An empty line; it ends an `lspci -vmm` record."""
    if ln.text:
        return NOT_MINE
    r.record = None
    return None


def vmm_field(r: Reader, ln: Line) -> object:
    """One field of an `lspci -vmm` record: `Slot:\t01:00.0`, `IOMMUGroup:\t13`."""
    m = VMM_FIELD.match(ln.text)
    return _vmm(r, ln.n, ln.raw, m["key"], m["value"]) if m else NOT_MINE


def _vmm(r: Reader, n: int, raw: str, key: str, value: str) -> object:
    """One `Key:\tvalue` line of `lspci -vmm` (with -nn the names carry `[id]`)."""
    if key == "Slot":
        if not ADDR_FIRST.match(value):
            return "an lspci -vmm Slot line without a readable address"
        result = r.add(n, raw, PciAddress.parse(value.split()[0]), None, {})
        r.record = r.last
        return result
    rec = r.record
    if rec is None:
        return None
    f = rec.fields
    name = VMM_NAME.match(value)
    text, ident = name["name"], int16(name["id"])
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
    elif key == "Rev" and is_hex(value):
        f["revision"] = int(value, 16)
    elif key == "ProgIf" and is_hex(value):
        if f.get("class_code") is not None:
            f["class_code"] = int(f["class_code"]) & ~0xFF | int(value, 16)  # type: ignore[call-overload]
        else:
            f["prog_if"] = int(value, 16)
    elif key in ("Driver", "Module"):
        r.saw_k = True
        if key == "Driver":
            f["driver"] = value
    elif key == "IOMMUGroup" and value.isascii() and value.isdigit():  # not "²": isdigit, not int
        f["iommu_group"] = int(value)
    return None


def flags_group(r: Reader, ln: Line) -> object:
    """`lspci -v`'s flags with the group of the device above:
    `Flags: bus master, fast devsel, latency 0, IRQ 16, IOMMU group 13`."""
    m = FLAGS_GROUP.match(ln.text)
    if not m or r.last is None:
        return NOT_MINE
    r.last.fields["iommu_group"] = int(m["n"])
    return None


def fence(r: Reader, ln: Line) -> object:
    """A markdown code fence: ```` ``` ````. A device line after it is not guessed into a group."""
    if not FENCE.match(ln.text):
        return NOT_MINE
    r.group = None
    return None


def expected_cmdline(r: Reader, ln: Line) -> object:
    """The line after `cat /proc/cmdline`: `BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=... quiet`."""
    if ln.expect != "cmdline" or ADDR_FIRST.match(ln.text) or GROUP_PREFIX.match(ln.text):
        return NOT_MINE
    r.cmdline = ln.text
    r.release_from_cmdline(ln.text)
    # A command line may name devices (pci=disable_acs_redir=0000:00:02.0): said, not a device.
    return "a kernel command line" if ADDRESS_TOKEN.search(ln.text) else None


def expected_release(r: Reader, ln: Line) -> object:
    """The line after `uname -r`: `6.8.12-4-pve`."""
    if ln.expect != "release" or not RELEASE.match(ln.text):
        return NOT_MINE
    r.release = ln.text
    return None


def sysfs_device(r: Reader, ln: Line) -> object:
    """A group's device link as `find` prints it: `/sys/kernel/iommu_groups/13/devices/0000:01:00.0`."""
    m = SYSFS_DEVICE.search(ln.text)
    return r.add(ln.n, ln.raw, PciAddress.parse(m["addr"]), int(m["n"]), {}) if m else NOT_MINE


def sysfs_group_dir(r: Reader, ln: Line) -> object:
    """A group's folder as `ls -R` prints it: `/sys/kernel/iommu_groups/13/devices:`."""
    m = SYSFS_GROUP_DIR.search(ln.text)
    return r.header(ln.n, int(m["n"])) if m and not ADDRESS_TOKEN.search(ln.text) else NOT_MINE


def tree_number(r: Reader, ln: Line) -> object:
    """A group number under `tree` drawing: `├── 13`."""
    m = BARE_NUMBER.match(ln.text) if ln.tree else None
    return r.header(ln.n, int(m["n"])) if m else NOT_MINE


def group_line(r: Reader, ln: Line) -> object:
    """A group header, alone or with its first device: `IOMMU Group 13:`, `### Group 13 ###`,
    `IOMMU Group 13 01:00.0 VGA compatible controller [0300]: ...`; prose such as
    `Group 13 is the GPU` is passed over."""
    m = GROUP_PREFIX.match(ln.text)
    if not m:
        return NOT_MINE
    rest = m["rest"].strip()
    if HEADER_TRAIL.match(rest):
        return r.header(ln.n, int(m["n"]))
    if ADDRESS_TOKEN.search(rest) or rest.startswith("["):
        before, r.group = r.group, int(m["n"])  # r15ch13 continues a group on lines without the prefix
        read = r.device(ln.n, ln.raw, rest, r.group)
        if isinstance(read, str) and rest[:1].isalpha():
            r.group = before  # prose (`Group 13 has my GPU at 01:00.0`) opens no group
            return NOT_MINE
        return read
    if bad := out_of_range(rest):
        r.header(ln.n, int(m["n"]))
        return bad
    return None


def driver_line(r: Reader, ln: Line) -> object:
    """`lspci -k`'s driver of the device above: `Kernel driver in use: vfio-pci`."""
    m = DRIVER_LINE.match(ln.text)
    if not m:
        return NOT_MINE
    r.saw_k = True
    if r.last is not None:
        r.last.fields["driver"] = m["driver"]
    return None


def modules_line(r: Reader, ln: Line) -> object:
    """`lspci -k`'s modules line: `Kernel modules: nouveau` (tells a `-k` listing)."""
    if not KMOD_LINE.match(ln.text):
        return NOT_MINE
    r.saw_k = True
    return None


def subsystem_line(r: Reader, ln: Line) -> object:
    """The subsystem ids of the device above: `Subsystem: ASUSTeK Computer Inc. Device [1043:8751]`."""
    m = SUBSYSTEM_LINE.match(ln.text)
    if not m:
        return NOT_MINE
    if r.last is not None and m["v"]:
        r.last.fields["subsystem_vendor_id"] = int(m["v"], 16)
        r.last.fields["subsystem_device_id"] = int(m["d"], 16)
    return None


def detail_line(r: Reader, ln: Line) -> object:
    """A detail line that tells nothing we keep: `DeviceName: Onboard IGD`, `USB: ...`, `total 0`."""
    text = ln.text
    return None if OTHER_K_LINE.match(text) or USB_LINE.match(text) or SYSFS_NOISE.match(text) else NOT_MINE


def prefixed_device(r: Reader, ln: Line) -> object:
    """A device line behind a short prefix, under a group header: `[3] 01:00.0 VGA ...`,
    `#12 0000:01:00.0 ...`, `-> 01:00.0 ...`, `12:03:44 01:00.0 ...`, `(0) 00:01.0 Host bridge ...`.

    Read before `prompt` and `comment`, which would take `#12 ...` for a heading. Outside a group,
    or when the prefix holds a word (`see 01:00.0 for the GPU`), the line stays prose."""
    m = PREFIXED.match(ln.text)
    if (r.group is None or not m or ADDRESS_TOKEN.search(m["prefix"]) or ADDR_FIRST.match(ln.text)
            or R15CH13.match(ln.text)):  # `[vvvv:dddd]` before the address is r15ch13's, read below
        return NOT_MINE
    read = r.device(ln.n, ln.raw, m["dev"], r.group)
    return NOT_MINE if isinstance(read, str) else read  # `(01:00.2 was here)` stays prose


def prompt(r: Reader, ln: Line) -> object:
    """A shell prompt and its command: `root@pve:~# lspci -nnk`."""
    m = PROMPT.match(ln.text)
    if not m or ADDR_FIRST.match(ln.text):
        return NOT_MINE
    r.command((m["cmd"] or m["cmd2"] or "").strip())
    r.group = None
    return "a shell prompt and command"


def comment(r: Reader, ln: Line) -> object:
    """A comment or markdown heading: `# my GPU groups`."""
    if not ln.text.startswith("#"):
        return NOT_MINE
    r.group = None
    return "a comment or heading"


def device_line(r: Reader, ln: Line) -> object:
    """A device: `01:00.0 VGA compatible controller [0300]: NVIDIA ... [10de:1b81] (rev a1)`, or
    r15ch13's `[10de:1b81] [R] 01:00.0  VGA compatible controller  GP104 [GeForce GTX 1070]`."""
    if ADDR_FIRST.match(ln.text) or R15CH13.match(ln.text):
        return r.device(ln.n, ln.raw, ln.text, r.group)
    return NOT_MINE


def symlink(r: Reader, ln: Line) -> object:
    """An `ls -l` symlink: `lrwxrwxrwx 1 root root 0 0000:01:00.0 -> ../../../../devices/...`."""
    m = SYMLINK.search(ln.text)
    return r.add(ln.n, ln.raw, PciAddress.parse(m["addr"]), r.group, {}) if m else NOT_MINE


def uname_prose(r: Reader, ln: Line) -> object:
    """`uname -a` said in a sentence: `uname -a: Linux pve 6.5.11-7-pve #1 SMP PREEMPT_DYNAMIC ...`
    (read before `command`, which would take it for the command alone)."""
    m = UNAME_PROSE.match(ln.text)
    said = UNAME_A.match(m["out"]) if m else None
    if not said:
        return NOT_MINE
    r.release = said["rel"]
    return "uname output"


def command(r: Reader, ln: Line) -> object:
    """A shell command without a prompt: `for d in /sys/kernel/iommu_groups/*/devices/*; do`."""
    if not COMMAND.match(ln.text):
        return NOT_MINE
    r.command(ln.text)
    r.group = None
    return "a shell command"


def cmdline(r: Reader, ln: Line) -> object:
    """A kernel command line: `BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=ZFS=rpool/ROOT/pve-1`."""
    if not CMDLINE.search(ln.text):
        return NOT_MINE
    r.cmdline = ln.text
    r.release_from_cmdline(ln.text)
    return "a kernel command line"


def uname(r: Reader, ln: Line) -> object:
    """`uname -a` or /proc/version: `Linux pve 6.8.12-4-pve #1 SMP PREEMPT_DYNAMIC ...`."""
    m = UNAME_A.match(ln.text) or PROC_VERSION.match(ln.text)
    if not m:
        return NOT_MINE
    r.release = m["rel"]
    return "uname output"


def leftover(r: Reader, ln: Line) -> object:
    """Any other line: prose passes (None); one that holds an address, or starts like an
    out-of-range one (`00:20.0 ...`), is reported."""
    if ADDRESS_TOKEN.search(ln.text):
        return "not a device line the reader knows"
    return out_of_range(ln.text)


KINDS: tuple[Matcher, ...] = (
    blank, vmm_field, flags_group, fence, expected_cmdline, expected_release, sysfs_device,
    sysfs_group_dir, tree_number, group_line, driver_line, modules_line, subsystem_line, detail_line,
    prefixed_device, prompt, comment, device_line, symlink, uname_prose, command, cmdline, uname, leftover,
)
