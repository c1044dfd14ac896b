"""Names for PCI ids, from the system's pci.ids, formatted the way lspci formats them.

The file is Debian's `pci.ids` package (`/usr/share/misc/pci.ids`) or hwdata's
(`/usr/share/hwdata/pci.ids`); `VFIOKIT_PCI_IDS` names another. Without it names degrade to
numbers, as lspci does, and `PciIds.missing_note` says so.

The file (about 1.3 MB, 36,000 lines) is read on the first lookup but parsed only where lookups
need it: parsing all of it took 20-25 ms, more than the rest of a 9-device `groups`. A vendor's
block (its line and its device lines) is found with `bytes.find` of "\\n<vendor>" on its first
lookup and checked for damaged lines only when a device lookup in it fails; the class section is
parsed on the first class lookup, and only `vendor_names()` (for pasted listings) reads every
vendor line. So a damaged line is said by `missing_note` only once it may have cost a name (a
device of its vendor unnamed, or any class lookup): read the note after the names it should
vouch for.

The formatting mirrors pciutils lib/names.c: `format_name_pair` for "vendor device",
`pci_lookup_name(PCI_LOOKUP_CLASS)` for the class (subclass name, else class name with the number,
else "Class xxxx").
"""

from __future__ import annotations

import os
import re
import stat
from functools import cached_property

from vfiokit.model import Device

SEARCH_PATH = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")

#: Where a vendor's block ends: at the next line that is not indented, a comment or empty
#: (another vendor, a class), as pciutils lib/names-parse.c reads the nesting.
_BLOCK_END = re.compile(rb"\n[^\t#\n]")
#: A damaged line in a vendor's block: indented once, but no device line (4 hex digits, two
#: spaces) and no subsystem line (two tabs). lspci refuses the whole file for one; here it costs
#: the names it held.
_BAD_DEVICE_LINE = re.compile(rb"\n\t(?![0-9a-f]{4}  |\t)")
#: A vendor line: 4 hex digits, two spaces, the name.
_VENDOR_LINE = re.compile(rb"([0-9a-f]{4})  (.*)")


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").strip()


def _line_start(data: bytes, key: bytes, then: bytes) -> int:
    """Where the first line that starts with `key` + `then` starts; -1 when none does. Only
    "\\n" + `key` is looked for: `then` (spaces, common in names) slows `bytes.find` twofold."""
    if data.startswith(key + then):
        return 0
    at = data.find(b"\n" + key)
    while at >= 0 and not data.startswith(then, at + 1 + len(key)):
        at = data.find(b"\n" + key, at + 1)
    return -1 if at < 0 else at + 1


class PciIds:
    """A pci.ids, parsed where lookups need it. `PciIds.system()` is the shared instance."""

    _system: PciIds | None = None

    def __init__(self, path: str | None) -> None:
        self.path = path
        #: Why a file that exists cannot be read (said by `missing_note`).
        self._problem: str | None = None
        #: Where the damaged lines that lookups reached start: a damaged line costs its names only.
        self._bad: set[int] = set()
        #: Each vendor looked up: its name (None: not in the file) and its block's (start, end).
        self._vendors: dict[int, tuple[str | None, tuple[int, int]]] = {}
        #: The vendors whose blocks were searched for damaged lines.
        self._checked: set[int] = set()
        #: Each device looked up: its name, None when the vendor's block does not list it.
        self._devices: dict[tuple[int, int], str | None] = {}

    @classmethod
    def system(cls) -> PciIds:
        if cls._system is None:
            env = os.environ.get("VFIOKIT_PCI_IDS")
            path = env if env is not None else next((p for p in SEARCH_PATH if os.path.exists(p)), None)
            cls._system = cls(path)
        return cls._system

    @cached_property
    def _data(self) -> bytes:
        """The whole file, in one read (FileIO sizes its buffer from fstat), empty without a
        readable one. Only a regular file is opened, and without blocking: a FIFO or device named
        by VFIOKIT_PCI_IDS is refused, as `rootfs.read_file` (which this layer may not import)
        refuses one. Bytes: only the names shown are decoded (UTF-8, a bad byte shown as U+FFFD)."""
        if self.path is None:
            return b""
        try:
            if stat.S_ISREG(os.stat(self.path).st_mode):
                with open(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb", buffering=0) as f:
                    return f.readall() or b""  # None: a FIFO put there since the stat, with nothing to read
            self._problem = f"cannot read {self.path}: not a regular file; "
        except OSError as e:
            self._problem = f"cannot read {self.path}: {e.strerror}; "
        self.path = None
        return b""

    def _vendor(self, vendor_id: int) -> tuple[str | None, tuple[int, int]]:
        """The vendor's name and where its block is, found on its first lookup. A vendor listed
        twice is read from its first block: lspci refuses such a file ("Duplicate entry",
        pciutils lib/names-parse.c), and looking for a second one would read the whole file on
        every lookup."""
        found = self._vendors.get(vendor_id)
        if found is not None:
            return found
        data = self._data
        start = _line_start(data, b"%04x" % vendor_id, b"  ")
        if start < 0:
            self._vendors[vendor_id] = (None, (0, 0))
        else:
            after = _BLOCK_END.search(data, start)
            end = len(data) if after is None else after.start() + 1
            line_end = data.find(b"\n", start, end)
            self._vendors[vendor_id] = (_name(data[start + 6:line_end if line_end >= 0 else end]), (start, end))
        return self._vendors[vendor_id]

    def _check_block(self, vendor_id: int) -> None:
        """Note the damaged lines of the vendor's block (once): a device it does not name may
        have been on one."""
        if vendor_id not in self._checked:
            self._checked.add(vendor_id)
            start, end = self._vendor(vendor_id)[1]
            self._bad.update(m.start() + 1 for m in _BAD_DEVICE_LINE.finditer(self._data, start, end))

    @cached_property
    def _classes(self) -> tuple[dict[int, str], dict[int, str]]:
        """(class names, subclass names by 16-bit id): the `C` lines and what follows them, at
        the end of the file (where pci.ids keeps them), parsed on the first class lookup."""
        classes: dict[int, str] = {}
        subclasses: dict[int, str] = {}
        data = self._data
        start = _line_start(data, b"C", b" ")
        if start < 0:
            return classes, subclasses
        cls = -1
        in_classes = False
        for line in data[start:].split(b"\n"):
            try:
                if not line or line[:1] == b"#":
                    pass
                elif line[:1] != b"\t":
                    in_classes = line[:2] == b"C "  # else a vendor's block: its lookups read it
                    if in_classes:
                        cls = -1  # until its number is read
                        cls = int(line[2:4], 16)
                        classes[cls] = _name(line[6:])
                elif in_classes and line[:2] != b"\t\t":  # two tabs: a prog-if, which lspci -nn omits
                    if cls < 0:
                        raise ValueError("a subclass under a damaged class line")
                    subclasses[(cls << 8) | int(line[1:3], 16)] = _name(line[5:])
            except ValueError:
                self._bad.add(start)
            start += len(line) + 1
        return classes, subclasses

    @cached_property
    def _holds_entries(self) -> bool:
        """Whether the file has a vendor line at all (the first is near the top of a real one)."""
        return re.search(rb"^[0-9a-f]{4}  ", self._data, re.M) is not None

    @property
    def missing_note(self) -> str | None:
        """Why some names are numbers: no file, a file that cannot be read or holds no entries, or
        the damaged lines the lookups so far reached (so read it after the lookups)."""
        self._data  # noqa: B018 - reading decides whether the file was usable
        if self.path is None:
            return (f"no pci.ids found ({self._problem or ''}install Debian's 'pci.ids' package or set "
                    "VFIOKIT_PCI_IDS): devices are shown by number")
        if not self._holds_entries:
            return f"{self.path} holds no pci.ids entries: devices it does not name are shown by number"
        if self._bad:
            first = self._data.count(b"\n", 0, min(self._bad)) + 1
            more = len(self._bad) - 1
            return (f"{self.path} line {first}: not pci.ids syntax"
                    + (f" (and {more} more lines)" if more else "")
                    + ", skipped: devices it does not name are shown by number")
        return None

    def vendor_names(self) -> frozenset[str]:
        """Every vendor name (to tell the vendor part of a pasted "vendor device" name): the one
        lookup that reads every vendor line."""
        names: dict[bytes, bytes] = {}
        for line in self._data.split(b"\n"):
            if (m := _VENDOR_LINE.match(line)) is not None:
                names[m[1]] = m[2]
        return frozenset(_name(n) for n in names.values())

    def class_of_name(self, name: str) -> int | None:
        """The 16-bit class id lspci names `name` (its subclass name, unique in pci.ids' class
        table): plain `lspci` prints the name without `[cccc]`, this gives the number back."""
        return self._class_ids.get(name)

    @cached_property
    def _class_ids(self) -> dict[str, int]:
        names: dict[str, int] = {}
        for class_id, name in self._classes[1].items():
            names[name] = -1 if name in names else class_id  # a name two classes share tells neither
        return {n: c for n, c in names.items() if c >= 0}

    def vendor(self, vendor_id: int) -> str | None:
        return self._vendor(vendor_id)[0]

    def device(self, vendor_id: int, device_id: int) -> str | None:
        # Remembered: a search through Intel's block is 20 us, and 10,000 functions share a few ids.
        key = (vendor_id, device_id)
        if key in self._devices:
            return self._devices[key]
        start, end = self._vendor(vendor_id)[1]
        at = self._data.find(b"\n\t%04x  " % device_id, start, end)  # listed twice: the first, as above
        if at < 0:
            name = None
            self._check_block(vendor_id)
        else:
            line_end = self._data.find(b"\n", at + 1, end)
            name = _name(self._data[at + 8:line_end if line_end >= 0 else end])
        self._devices[key] = name
        return name

    def class_name(self, class_id: int, mixed: bool = False) -> str:
        """lspci's class text for a 16-bit class id; `mixed` adds ` [cccc]` as `-nn` does."""
        sub = self._classes[1].get(class_id)
        num = f"{class_id:04x}"
        if sub is not None:
            return f"{sub} [{num}]" if mixed else sub
        base = self._classes[0].get(class_id >> 8)
        if base is not None:
            return f"{base} [{num}]"  # names.c adds the full number when only the class is known
        return f"Class [{num}]" if mixed else f"Class {num}"

    def vendor_device(self, vendor_id: int, device_id: int, mixed: bool = False) -> str:
        """lspci's "vendor device" text (names.c format_name_pair)."""
        v, d = self.vendor(vendor_id), self.device(vendor_id, device_id)
        num = f"{vendor_id:04x}:{device_id:04x}"
        if mixed:
            if v and d:
                return f"{v} {d} [{num}]"
            return f"Device [{num}]" if not v else f"{v} Device [{num}]"
        if v and d:
            return f"{v} {d}"
        return f"Device {num}" if not v else f"{v} Device {device_id:04x}"


def lspci_line(dev: Device, ids: PciIds, numeric: bool = False, domain: bool = False) -> str:
    """The line `lspci -s ADDR` prints for `dev` (`-nn` when `numeric`; `-D` when `domain`).

    A device from a pasted listing carries the names its author's lspci printed: those are kept.
    """
    slot = str(dev.address) if domain else dev.address.short
    if dev.class_name is not None:
        klass = f"{dev.class_name} [{dev.class_id:04x}]" if numeric and dev.class_id is not None \
            else dev.class_name
    elif dev.class_id is not None:
        klass = ids.class_name(dev.class_id, mixed=numeric)
    else:
        klass = "Unknown class"
    own = " ".join(filter(None, (dev.vendor_name, dev.device_name)))
    if own:
        name = f"{own} [{dev.ids}]" if numeric and dev.ids else own
    elif dev.vendor_id is not None and dev.device_id is not None:
        name = ids.vendor_device(dev.vendor_id, dev.device_id, mixed=numeric)
    else:
        name = "Unknown device"
    rev = f" (rev {dev.revision:02x})" if dev.revision else ""
    return f"{slot} {klass}: {name}{rev}"

