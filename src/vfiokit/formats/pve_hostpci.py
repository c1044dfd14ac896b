"""The `hostpciN` value of a Proxmox VE VM config: qemu-server's `$hostpci_fmt`
(PVE/QemuServer/PCI.pm), parsed the way `PVE::JSONSchema::parse_property_string` parses it; errors
use Proxmox's own wording where it has one. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from vfiokit.errors import BadInput

#: qemu-server's $MAX_HOSTPCI_DEVICES.
MAX_HOSTPCI = 16
HOSTPCI_KEYS = tuple(f"hostpci{i}" for i in range(MAX_HOSTPCI))

#: One host PCI id as qemu-server accepts it ($PCIRE, PVE/QemuServer/PCI.pm): optional domain, no
#: function = the whole slot. Groups: domain, bus, slot, function. The one copy of the pattern:
#: `host_needs` reads the ids of VM configs with it too.
HOST_ID_RE = re.compile(r"(?:([a-f0-9]{4,}):)?([a-f0-9]{2}):([a-f0-9]{2})(?:\.([a-f0-9]))?")

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


@dataclass(frozen=True)
class HostPci:
    """One `hostpciN` value: host ids (`;`-separated alternatives of one device) or a mapping id."""

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
    if kind == "romfile":
        return check_romfile(value, where)
    return value


def check_romfile(value: str, where: str = "romfile") -> str:
    """A ROM file name under /usr/share/kvm/ (qemu-server passes `/usr/share/kvm/$romfile` to QEMU).

    `/usr/share/kvm/x.rom` is accepted and written as `x.rom`; any other absolute path, or a path
    climbing out with `..`, is refused rather than silently pointing somewhere else.
    """
    if value.startswith("/usr/share/kvm/"):
        value = value[len("/usr/share/kvm/"):]
    if not value or value.startswith("/") or ".." in value.split("/") or not re.fullmatch(r"[^,;\x00-\x1f\x7f]+",
                                                                                           value):
        raise BadInput(f"{where}: {value!r}: the ROM file must be a file name under /usr/share/kvm/ "
                       "(qemu-server looks nowhere else)")
    return value


def parse_hostpci(value: str, where: str = "hostpci") -> HostPci:
    """Parse a `hostpciN` value; `BadInput` naming `where` and the offending key otherwise."""
    host: str | None = None
    mapping: str | None = None
    opts: dict[str, str] = {}
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        key, eq, val = part.partition("=")
        if not eq:
            key, val = "host", part
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
            raise BadInput(f"{where}: invalid key in comma-separated list property: {key}")
    # qemu-server parse_hostpci: exactly one of host and mapping.
    if host is not None and mapping is not None:
        raise BadInput(f"{where}: Cannot set both 'host' and 'mapping'.")
    if host is None and mapping is None:
        raise BadInput(f"{where}: Either 'host' or 'mapping' must be set.")
    return HostPci(tuple(host.split(";")) if host else (), mapping, tuple(opts.items()))


def make_hostpci(host: Iterable[str] = (), mapping: str | None = None,
                 **options: str | int | bool | None) -> HostPci:
    """Build a value from keyword options (`x_vga=True` is `x-vga=1`), checked like a parsed one."""
    parts = [";".join(host)] if host else ([f"mapping={mapping}"] if mapping else [])
    for name in HOSTPCI_OPTIONS:
        v = options.pop(name.replace("-", "_"), None)
        if v is None:
            continue
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
