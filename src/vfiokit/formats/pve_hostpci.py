"""The `hostpciN` value of a Proxmox VE VM config: qemu-server's `$hostpci_fmt`
(PVE/QemuServer/PCI.pm), parsed the way `PVE::JSONSchema::parse_property_string` parses it; errors
use Proxmox's own wording where it has one. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from vfiokit.errors import BadInput
from vfiokit.model import PciAddress

#: qemu-server's $MAX_HOSTPCI_DEVICES.
MAX_HOSTPCI = 16
HOSTPCI_KEYS = tuple(f"hostpci{i}" for i in range(MAX_HOSTPCI))

#: One host PCI id as qemu-server accepts it ($PCIRE, PVE/QemuServer/PCI.pm): optional domain, no
#: function = the whole slot. Groups: domain, bus, slot, function. The one copy of the pattern:
#: `host_needs` reads the ids of VM configs with it too.
HOST_ID_RE = re.compile(r"(?:([a-f0-9]{4,}):)?([a-f0-9]{2}):([a-f0-9]{2})(?:\.([a-f0-9]))?")
#: What a device argument may be, for error messages.
HOST_ID_HINT = "expected [DDDD:]BB:DD.F, or BB:DD for all functions of a slot (e.g. 07:00.0, 0000:07:00, 01:00)"


def parse_host_id(text: str) -> tuple[PciAddress, bool] | None:
    """The one reader of "an address or a slot" (a device argument, a hostpci or mapping id):
    (the address, True when it names the whole slot: then its function 0); None when `text` is
    not a host id, or names a device number above 0x1f or a function above 7."""
    m = HOST_ID_RE.fullmatch(text.strip().lower())
    if not m or int(m[3], 16) > 0x1F or (m[4] is not None and int(m[4], 16) > 7):
        return None
    return PciAddress(int(m[1] or "0", 16), int(m[2], 16), int(m[3], 16), int(m[4] or "0", 16)), m[4] is None

#: PVE::JSONSchema::pve_verify_configid, the format of a mapping id.
# Every pattern ends with \Z (or is used with fullmatch), not $: `$` also matches before a final
# "\n", and a value with a newline written into a config file or a `qm set` argument is a second,
# injected line.
CONFIGID_RE = re.compile(r"^[a-z][a-z0-9_-]+\Z", re.IGNORECASE)
_HEX_ID_RE = re.compile(r"^0x[0-9a-fA-F]{4}\Z")
#: A control character (a newline above all) ends a config line or an argument early.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_plain(value: str, what: str) -> str:
    """`value` (a node name, a description, any text that goes into a Proxmox config or API
    call) when it holds no control character; `BadInput` otherwise (the value shown escaped)."""
    if _CONTROL.search(value):
        raise BadInput(f"{what} {value!r}: holds a line break or another control character")
    return value

_BOOL_TRUE = ("1", "on", "yes", "true")
_BOOL_FALSE = ("0", "off", "no", "false")

#: The options of $hostpci_fmt besides host/mapping, in the order we write them, with their kind.
#: Booleans are normalized to 1/0 as PVE::JSONSchema does when it checks a property string.
HOSTPCI_OPTIONS: dict[str, str] = {
    "pcie": "bool",
    "x-vga": "bool",
    "rombar": "bool",
    "romfile": "romfile",
    "legacy-igd": "bool",
    "mdev": "mdev",
    "driver": "driver",
    "vendor-id": "hexid",
    "device-id": "hexid",
    "sub-vendor-id": "hexid",
    "sub-device-id": "hexid",
}


class HostPci(NamedTuple):
    """One `hostpciN` value: host ids or a mapping id.

    `host=a;b` is ONE device made of every id it lists, all passed to the VM together (qemu-server
    parse_hostpci pushes `[split(/;/, $host)]` as a single alternative; PCI virtual functions or
    functions of one card). Alternatives (first free one taken at start) exist only for a mapping:
    each of its `map` entries on the node is one, and a `;` inside an entry's path again lists
    ids passed together.
    """

    host: tuple[str, ...] = ()
    mapping: str | None = None
    #: Other options as (key, value) in the order written; values normalized (booleans 1/0).
    options: tuple[tuple[str, str], ...] = ()

    def option(self, key: str) -> str | None:
        return dict(self.options).get(key)

    def flag(self, key: str) -> bool:
        return self.option(key) == "1"

    def render(self) -> str:
        """The value as qemu-server prints a property string: default key first, bare."""
        head = [";".join(self.host)] if self.host else [f"mapping={self.mapping}"]
        return ",".join(head + [f"{k}={v}" for k, v in self.options])


def _normalize(key: str, value: str, where: str) -> str:
    kind = HOSTPCI_OPTIONS[key]
    if kind == "bool":
        low = value.lower()
        if low in _BOOL_TRUE:
            return "1"
        if low in _BOOL_FALSE:
            return "0"
        raise BadInput(f"{where}: {key}: type check ('boolean') failed - got '{value}'")
    if kind == "hexid" and not _HEX_ID_RE.match(value):
        raise BadInput(f"{where}: {key}: value does not match the regex pattern (expected 0x followed "
                       f"by 4 hex digits, got '{value}')")
    if kind == "mdev" and not re.fullmatch(r"[^/.:\x00-\x1f\x7f]+", value):
        raise BadInput(f"{where}: mdev: value does not match the regex pattern (got '{value}')")
    if kind == "driver" and value not in ("vfio", "keep"):
        raise BadInput(f"{where}: driver: value '{value}' does not have a value in the enumeration "
                       "'vfio, keep'")
    if kind == "romfile" and not re.fullmatch(r"[^,;\x00-\x1f\x7f]+", value):
        # $hostpci_fmt's romfile pattern `[^,;]+` (no control character: one would cut or inject a
        # config line); vfiokit writes only check_romfile's.
        raise BadInput(f"{where}: romfile: value does not match the regex pattern (got '{value}')")
    return value


def check_romfile(value: str, where: str = "romfile") -> str:
    """A ROM file name vfiokit writes: a name under /usr/share/kvm/ (qemu-server's
    print_hostpci_devices passes `/usr/share/kvm/$romfile` to QEMU, whatever `$romfile` is).

    This is the rule for what vfiokit WRITES (`make_hostpci`, `attach --romfile`), not for reading:
    `parse_hostpci` reads any `[^,;]+` as `$hostpci_fmt` does, so another VM's config holding
    `romfile=/root/x.rom` still reads. `/usr/share/kvm/x.rom` is accepted and written as `x.rom`;
    any other absolute path, or a path climbing out with `..`, is refused rather than silently
    pointing somewhere else.
    """
    if value.startswith("/usr/share/kvm/"):
        value = value[len("/usr/share/kvm/"):]
    if not value or value.startswith("/") or ".." in value.split("/") or not re.fullmatch(r"[^,;\x00-\x1f\x7f]+",
                                                                                           value):
        raise BadInput(f"{where}: {value!r}: the ROM file must be a file name under /usr/share/kvm/ "
                       "(qemu-server looks nowhere else)")
    return value


def parse_hostpci(value: str, where: str = "hostpci") -> HostPci:
    """Parse a `hostpciN` value as PVE::JSONSchema::parse_property_string reads `$hostpci_fmt`;
    `BadInput` naming `where` and the offending key otherwise.

    Parts are not trimmed: in `01:00.0, pcie=1` the key is ` pcie`, an invalid key for Proxmox
    too. Option values are read as Proxmox reads them (a `romfile` is any `[^,;]+`); what vfiokit
    writes is checked by `make_hostpci`.
    """
    host: str | None = None
    mapping: str | None = None
    opts: dict[str, str] = {}
    for part in value.split(","):
        if re.fullmatch(r"\s*", part, re.ASCII):  # `next if $part =~ /^\s*$/`
            continue
        key, eq, val = part.partition("=")
        if not eq:
            key, val = "host", part
        elif not key or not val:  # neither `^([^=]+)=(.+)$` nor a part without `=`
            raise BadInput(f"{where}: missing key in comma-separated list property ('{part}')")
        if key == "host":
            if host is not None:
                raise BadInput(f"{where}: duplicate key in comma-separated list property: host")
            if not all(HOST_ID_RE.fullmatch(part) for part in val.split(";")):
                raise BadInput(f"{where}: host: value does not match the regex pattern (expected "
                               f"[DDDD:]BB:DD[.F] in lowercase hex, ';' between ids; got '{val}')")
            host = val
        elif key == "mapping":
            if mapping is not None:
                raise BadInput(f"{where}: duplicate key in comma-separated list property: mapping")
            if not CONFIGID_RE.match(val):
                raise BadInput(f"{where}: mapping: invalid configuration ID '{val}'")
            mapping = val
        elif key in HOSTPCI_OPTIONS:
            if key in opts:
                raise BadInput(f"{where}: duplicate key in comma-separated list property: {key}")
            opts[key] = _normalize(key, val, where)
        else:
            raise BadInput(f"{where}: invalid key in comma-separated list property: {key!r}")
    # qemu-server parse_hostpci: exactly one of host and mapping.
    if host is not None and mapping is not None:
        raise BadInput(f"{where}: Cannot set both 'host' and 'mapping'.")
    if host is None and mapping is None:
        raise BadInput(f"{where}: Either 'host' or 'mapping' must be set.")
    return HostPci(tuple(host.split(";")) if host else (), mapping, tuple(opts.items()))


def make_hostpci(host: Iterable[str] = (), mapping: str | None = None,
                 **options: str | int | bool | None) -> HostPci:
    """Build a value vfiokit writes from keyword options (`x_vga=True` is `x-vga=1`), checked like a
    parsed one and, for `romfile`, by `check_romfile` (stricter than what reads)."""
    parts = [";".join(host)] if host else ([f"mapping={mapping}"] if mapping else [])
    for name in HOSTPCI_OPTIONS:
        v = options.pop(name.replace("-", "_"), None)
        if v is None:
            continue
        if name == "romfile":
            v = check_romfile(str(v))
        parts.append(f"{name}={int(v) if isinstance(v, bool) else v}")
    if options:
        raise TypeError(f"unknown hostpci options: {', '.join(options)}")
    return parse_hostpci(",".join(parts))


def host_functions(host_id: str) -> str:
    """A host id as the full `DDDD:BB:DD[.F]` (qemu-server normalizes a missing domain to 0000)."""
    return host_id if host_id.count(":") == 2 else f"0000:{host_id}"


def covers(host_id: str, address: str) -> bool:
    """Whether a `hostpciN` host id takes the function at `address` (`DDDD:BB:DD.F`).

    A slot id without function (`01:00`) takes every function of the slot (lspci filter match in
    PVE::SysFSTools::lspci).
    """
    full = host_functions(host_id.lower())
    return address == full if "." in full else address.rsplit(".", 1)[0] == full
