"""Names for PCI ids, from the system's pci.ids, formatted the way lspci formats them.

The file is Debian's `pci.ids` package (`/usr/share/misc/pci.ids`) or hwdata's
(`/usr/share/hwdata/pci.ids`); `VFIOKIT_PCI_IDS` names another. It is read lazily, once, on the
first lookup (about 1.3 MB, some 40 ms). Without it names degrade to numbers, as lspci does, and
`PciIds.missing_note` says so.

The formatting mirrors pciutils lib/names.c: `format_name_pair` for "vendor device",
`pci_lookup_name(PCI_LOOKUP_CLASS)` for the class (subclass name, else class name with the number,
else "Class xxxx").
"""

from __future__ import annotations

import os
from functools import cached_property

from vfiokit.model import Device

SEARCH_PATH = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")


class PciIds:
    """A parsed pci.ids. `PciIds.system()` is the shared lazily-loaded instance."""

    _system: PciIds | None = None

    def __init__(self, path: str | None) -> None:
        self.path = path
        #: Why a file that exists gave fewer names than it should (said by `missing_note`).
        self._problem: str | None = None

    @classmethod
    def system(cls) -> PciIds:
        if cls._system is None:
            env = os.environ.get("VFIOKIT_PCI_IDS")
            path = env if env is not None else next((p for p in SEARCH_PATH if os.path.exists(p)), None)
            cls._system = cls(path)
        return cls._system

    @cached_property
    def _tables(self) -> tuple[dict[int, str], dict[tuple[int, int], str], dict[int, str], dict[int, str]]:
        vendors: dict[int, str] = {}
        devices: dict[tuple[int, int], str] = {}
        classes: dict[int, str] = {}
        subclasses: dict[int, str] = {}
        if self.path is None:
            return vendors, devices, classes, subclasses
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError as e:
            self._problem = f"cannot read {self.path}: {e.strerror}; "
            self.path = None
            return vendors, devices, classes, subclasses
        vendor = cls = -1
        in_classes = False
        bad: list[int] = []
        for number, line in enumerate(lines, 1):
            if not line or line[0] == "#":
                continue
            try:
                if line[0] != "\t":
                    if line.startswith("C "):
                        cls = int(line[2:4], 16)
                        in_classes = True
                        classes[cls] = line[6:].strip()
                    else:
                        in_classes = False
                        try:
                            vendor = int(line[:4], 16)
                        except ValueError:
                            vendor = -1  # other lists (device_class_ids? unknown) are skipped
                            continue
                        vendors[vendor] = line[6:].strip()
                elif line.startswith("\t\t"):
                    continue  # subsystems and prog-ifs: lspci's terse line shows neither
                elif in_classes:
                    subclasses[(cls << 8) | int(line[1:3], 16)] = line[5:].strip()
                elif vendor >= 0:
                    devices[(vendor, int(line[1:5], 16))] = line[7:].strip()
            except ValueError:
                bad.append(number)  # names are cosmetic: a damaged line costs its names only
        if not vendors:
            self._problem = f"{self.path} holds no pci.ids entries"
        elif bad:
            self._problem = (f"{self.path} line {bad[0]}: not pci.ids syntax"
                             + (f" (and {len(bad) - 1} more lines)" if len(bad) > 1 else "")
                             + ", skipped")
        return vendors, devices, classes, subclasses

    @property
    def missing_note(self) -> str | None:
        self._tables  # noqa: B018 - loading decides whether the file was usable
        if self.path is None:
            return (f"no pci.ids found ({self._problem or ''}install Debian's 'pci.ids' package or set "
                    "VFIOKIT_PCI_IDS): devices are shown by number")
        if self._problem is not None:
            return f"{self._problem}: devices it does not name are shown by number"
        return None

    def vendor_names(self) -> frozenset[str]:
        """Every vendor name (to tell the vendor part of a pasted "vendor device" name)."""
        return frozenset(self._tables[0].values())

    def class_of_name(self, name: str) -> int | None:
        """The 16-bit class id lspci names `name` (its subclass name, unique in pci.ids' class
        table): plain `lspci` prints the name without `[cccc]`, this gives the number back."""
        return self._class_ids.get(name)

    @cached_property
    def _class_ids(self) -> dict[str, int]:
        names: dict[str, int] = {}
        for class_id, name in self._tables[3].items():
            names[name] = -1 if name in names else class_id  # a name two classes share tells neither
        return {n: c for n, c in names.items() if c >= 0}

    def vendor(self, vendor_id: int) -> str | None:
        return self._tables[0].get(vendor_id)

    def device(self, vendor_id: int, device_id: int) -> str | None:
        return self._tables[1].get((vendor_id, device_id))

    def class_name(self, class_id: int, mixed: bool = False) -> str:
        """lspci's class text for a 16-bit class id; `mixed` adds ` [cccc]` as `-nn` does."""
        sub = self._tables[3].get(class_id)
        num = f"{class_id:04x}"
        if sub is not None:
            return f"{sub} [{num}]" if mixed else sub
        base = self._tables[2].get(class_id >> 8)
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
