"""Pasted IOMMU listings: the text people post in forums and READMEs, read into a `Topology`.

A listing is what someone's script printed, often with the noise of a paste around it (prompts,
commands, markdown, colours, lines cut short). The reader is line-oriented: each line is cleaned
(ANSI colours, markdown quoting and bullets, tree drawing), then read by the first kind of line that
claims it (`listing_lines.KINDS`, an ordered table; the named patterns are in `listing_text`):

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
import io
import sys
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import BinaryIO

from vfiokit.errors import BadInput
from vfiokit.gc_pause import gc_paused
from vfiokit.model import Topology

#: The longest line a listing may hold, in characters. The widest real line (`lspci -nnk -vv`'s
#: capability dumps, a pvesh table of long names) is a few hundred; a longer one is not a listing.
from vfiokit.sources.listing_reader import ListingRead, Reader


def parse(text: str, origin: str = "listing",
          vendor_of: Callable[[int], str | None] | None = None,
          vendor_names: Collection[str] = (),
          class_of: Callable[[str], int | None] | None = None) -> ListingRead:
    """Read a pasted listing. `vendor_of`/`vendor_names` (from pci.ids) only split "vendor device"
    names; `class_of` gives the class number of a class name printed without `[cccc]`; groups,
    addresses and ids never depend on them. Raises BadInput only."""
    return parse_lines(_lines(text), origin, vendor_of, vendor_names, class_of)


def parse_lines(lines: Iterable[str], origin: str = "listing",
                vendor_of: Callable[[int], str | None] | None = None,
                vendor_names: Collection[str] = (),
                class_of: Callable[[str], int | None] | None = None) -> ListingRead:
    """`parse` over lines as `str.splitlines` gives them, taken one at a time."""
    reader = Reader(origin, vendor_of, vendor_names, class_of)
    # The reader makes only acyclic objects (a few per line): the cyclic collector would walk all
    # of them again and again as they pile up, which made a 1,000,000-line listing quadratic.
    with gc_paused():
        for number, raw in enumerate(lines, 1):
            try:
                reader.line(number, raw)
            except ValueError:
                # int() refuses a number of more than 4,300 digits (CPython's int_max_str_digits).
                raise BadInput(f"{origin}: line {number}: a number too long to be one vfiokit reads",
                               file=reader.file, line=number) from None
        top, line_of = reader.topology()
    return ListingRead(top, line_of, tuple(reader.skipped), tuple(reader.cut))


def _lines(text: str) -> Iterator[str]:
    """`text.splitlines()` one line at a time: a 99 MB paste is not copied into a list of lines."""
    start, size = 0, len(text)
    while start < size:
        end = text.find("\n", start)
        if end < 0:
            end = size
        # splitlines also ends a line at \r, \v, \f, \x1c-\x1e, \x85, \u2028 and \u2029.
        yield from text[start:end + 1].splitlines()
        start = end + 1


def parse_with_pciids(text: str | Iterable[str], origin: str) -> ListingRead:
    """`parse` (or `parse_lines`, given lines) with the system's pci.ids to tell vendor names from
    device names."""
    from vfiokit.pciids import PciIds

    ids = PciIds.system()
    lines = _lines(text) if isinstance(text, str) else text
    return parse_lines(lines, origin, ids.vendor, ids.vendor_names(), ids.class_of_name)


def _file_lines(f: BinaryIO, path: str) -> Iterator[str]:
    """The lines of a listing file as `str.splitlines` gives them, decoded as they are read: a 99 MB
    paste is never held whole, neither as bytes nor as text."""
    head = f.read(4)
    f.seek(0)
    # Windows PowerShell's `>` writes UTF-16 with a byte order mark; Notepad UTF-8 with one.
    utf16 = head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    text = io.TextIOWrapper(f, encoding="utf-16" if utf16 else "utf-8-sig", errors="replace", newline="")
    first = True
    for chunk in text:
        if first:
            chunk, first = chunk.removeprefix("\ufeff"), False
        if "\x00" in chunk:
            raise BadInput(f"{path}: not a text listing (binary data)")
        yield from chunk.splitlines()


def load(path: str) -> Topology:
    """Read a listing file (`-`: standard input); BadInput names the file when it cannot be read."""
    try:
        if path != "-":
            with open(path, "rb") as f:
                return parse_with_pciids(_file_lines(f, path), f"listing {path}").topology
        # Bytes, decoded below like a file: the locale's strict UTF-8 would fail on a paste
        # with one stray Latin-1 byte (a test's StringIO has no buffer: already text).
        raw_in = getattr(sys.stdin, "buffer", None)
        data, origin = (raw_in.read() if raw_in is not None else sys.stdin.read()), "listing <stdin>"
        if isinstance(data, str):
            text = data
        else:
            # Windows PowerShell's `>` writes UTF-16 with a byte order mark; Notepad UTF-8 with one.
            utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
            text = data.decode("utf-16" if utf16 else "utf-8-sig", errors="replace")
    except OSError as e:
        raise BadInput(f"{path}: cannot read listing ({e.strerror})", file=path) from None
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise BadInput(f"{path}: not a text listing (binary data)", file=path)
    return parse_with_pciids(text, origin).topology


