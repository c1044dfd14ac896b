"""The raw capture: what a sysfs reader saw, as plain data, and how it is modelled.

A capture is a JSON-ready dict. The live reader's `sysfs.capture` produces one, a snapshot file is
one written to disk, and `build_topology` models it. Keeping "what was read" apart from "what it
means" is what makes a snapshot load to exactly the model of the live tree it came from: the live
reader's `read_topology` skips the dict but models each function with the same `model_device` and
checks the groups with the same `Groups`, so it gives the Topology `build_topology` gives for the
tree's capture (tests/test_sysfs_reading.py holds the two to it).

Layout (version 1)::

    {"format": "vfiokit-snapshot", "version": 1,
     "captured": {"at": ISO-8601, "by": user, "as_root": bool, "vfiokit": version},
     "host": {"kernel_release", "cmdline", "cpu_vendor", "cpu_flags", "iommu_units", "hostname",
              "board", "dmesg", "dmesg_source"},      # each may be null
     "iommu_groups": {"<n>": ["DDDD:BB:DD.F", ...]} | null,
     "devices": {"DDDD:BB:DD.F": {
         "path": "pci0000:00/0000:00:01.1/0000:01:00.0",   # below /sys/devices
         "attrs": {"vendor": "0x1022", ...},               # sysfs attribute text, stripped
         "links": {"driver": "nvme", "physfn": "0000:..."}, # basenames of symlink targets
         "files": ["reset", "pci_bus"],                    # presence-only entries
         "config": "hex" | null,                           # readable config space bytes,
         "config_size": int | null}},                      #  trailing zero bytes left out
     "read_notes": ["what the reader could not read", ...],
     "host_usage": {...} | null,                          # what the host uses, when gathered
     "doctor": {...} | null}                              # what `doctor` reads besides (doctor_facts.py)
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from types import MappingProxyType
from typing import Any

from vfiokit.errors import BadInput
from vfiokit.formats import host_usage_facts, pciconfig
from vfiokit.model import (
    PCI_TO_PCIE_BRIDGE,
    PCIE_DOWNSTREAM_PORT,
    PCIE_ROOT_PORT,
    PCIE_UPSTREAM_PORT,
    Device,
    Group,
    HostInfo,
    PciAddress,
    Topology,
)

FORMAT = "vfiokit-snapshot"
VERSION = 1

#: sysfs attributes read for every function that has them.
ATTRS = ("boot_vga", "reset_method")
#: those a read that judges no reset asks for; the judged devices' reset facts come afterwards
#: (`sysfs.with_reset_methods`).
NO_RESET_ATTRS = tuple(a for a in ATTRS if a != "reset_method")
#: attributes that repeat config space bytes 0-63: read only when config space could not be.
ID_ATTRS = ("vendor", "device", "subsystem_vendor", "subsystem_device", "class", "revision")
#: the width of the register behind each id attribute (the kernel prints them from config space), in
#: the order of the Device fields they fill.
_ID_BITS = {"vendor": 16, "device": 16, "subsystem_vendor": 16, "subsystem_device": 16, "class": 24,
            "revision": 8}
#: symlinks whose target's basename is kept. A device's `iommu_group` link is not read: the
#: group folders say the same, for one listing per group instead of one readlink per device.
LINKS = ("driver", "physfn")
#: those a read that shows no driver asks for (`simulate` without --device or --alone)
NO_DRIVER_LINKS = tuple(link for link in LINKS if link != "driver")
#: entries whose mere presence matters: `reset` (a reset exists), `pci_bus` (a bridge, which
#: Proxmox's pci_dev_group_bind_to_vfio leaves alone).
FILES = ("reset", "pci_bus")

_HOST_KEYS = ("kernel_release", "cmdline", "cpu_vendor", "cpu_flags", "iommu_units", "hostname",
              "board", "dmesg", "dmesg_source")
#: the host facts that are lists of strings (the others are strings).
_HOST_LISTS = ("cpu_flags", "iommu_units", "dmesg")


def _int(text: str | None, where: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 0) if text.startswith("0x") else int(text)
    except ValueError:
        raise BadInput(f"{where}: '{text}' is not a number") from None


def parse_key(key: str, origin: str) -> PciAddress:
    """The address of a capture's device key; BadInput naming the source otherwise."""
    try:
        return PciAddress.parse(key)
    except BadInput as e:
        raise BadInput(f"{origin}: devices: {e}") from None


def _parent_of(path: str) -> PciAddress | None:
    """The bridge above a device, from its /sys/devices path: the previous PCI component."""
    parts = path.split("/")
    for part in reversed(parts[:-1]):
        try:
            return PciAddress.parse(part)
        except BadInput:
            continue
    return None


def pack_config(data: bytes) -> dict[str, Any]:
    """The capture's form of config space: hex without the trailing zeros, and the size read."""
    return {"config": data.rstrip(b"\0").hex(), "config_size": len(data)}


def config_bytes(entry: Mapping[str, Any], where: str) -> bytes | None:
    """Config space bytes of a capture entry (inverse of `pack_config`); None when not read."""
    cfg_hex, size = entry.get("config"), entry.get("config_size")
    if cfg_hex is None:
        return None
    try:
        data = bytes.fromhex(cfg_hex)
    except (ValueError, TypeError):
        raise BadInput(f"{where}: 'config' is not hexadecimal") from None
    if not isinstance(size, int) or size < len(data) or size > 4096:
        raise BadInput(f"{where}: 'config_size' {size!r} does not fit the config bytes")
    return data.ljust(size, b"\0")


def _where(origin: str, addr: PciAddress) -> str:
    return f"{origin}: device {addr}"


def _link_address(target: str, origin: str, addr: PciAddress, known: Mapping[str, PciAddress]) -> PciAddress:
    """The address a link's target names (`physfn`), from `known` when it holds that name;
    BadInput naming the device otherwise."""
    a = known.get(target)
    if a is not None:
        return a
    try:
        return PciAddress.parse(target)
    except BadInput as e:
        raise BadInput(f"{_where(origin, addr)}: link physfn: {e}") from None


def _attr_int(attrs: Mapping[str, str], name: str, origin: str, addr: PciAddress) -> int | None:
    """An id attribute's value (`_ID_BITS` names them), checked against its register's width."""
    text = attrs.get(name)
    if text is None:  # no attribute (a bridge's subsystem ids): no message to make for it
        return None
    value = _int(text, f"{_where(origin, addr)}: attribute {name}")
    if value is not None and not 0 <= value < 1 << _ID_BITS[name]:
        raise BadInput(f"{_where(origin, addr)}: attribute {name}: '{attrs[name]}' does not fit its "
                       f"{_ID_BITS[name]} bits")
    return value


def model_device(addr: PciAddress, origin: str, *, path: str | None, parent: PciAddress | None,
                 attrs: Mapping[str, str], links: Mapping[str, str] | None, files: list[str] | None,
                 cfg: bytes | None, group: int | None,
                 known: Mapping[str, PciAddress] = MappingProxyType({}), drivers: bool = True) -> Device:
    """The Device of what was read for one function: config space bytes as read (None when not
    readable), sysfs attribute text, symlink basenames (None: links not read) and presence-only
    files. Shared by the snapshot loader and the live reader, so both model a function alike.
    `known` holds addresses already parsed, by name (a reader's `Groups.address_of`); `drivers`
    False when the `driver` link was not read (the driver is then unknown, None)."""
    facts = pciconfig.decode(cfg) if cfg else None
    reset_method = attrs.get("reset_method")
    boot_vga = attrs.get("boot_vga")
    physfn = links.get("physfn") if links is not None else None
    # Read once per function of a large host: one branch per case rather than a test per field.
    common = {
        # No `driver` link means no driver bound ("").
        "driver": links.get("driver", "") if links is not None and drivers else None,
        "iommu_group": group,
        "parent": parent,
        "sysfs_path": path,
        "boot_vga": None if boot_vga is None else boot_vga == "1",
        "reset_methods": tuple(reset_method.split()) if reset_method is not None else None,
        "has_reset": "reset" in files if files is not None else None,
        "config_size": len(cfg) if cfg is not None else None,
        "physfn": _link_address(physfn, origin, addr, known) if physfn else None,
    }
    if facts is None:
        # Config space is what the kernel's attributes are made of; they fill in only where it was
        # not readable.
        ids = [_attr_int(attrs, name, origin, addr) for name in _ID_BITS]
        return Device(addr, *ids, **common)
    sub_v, sub_d = facts.subsystem_vendor_id, facts.subsystem_device_id
    if sub_v is None:  # a bridge's header has no subsystem ids: the attributes may
        sub_v = _attr_int(attrs, "subsystem_vendor", origin, addr)
        sub_d = _attr_int(attrs, "subsystem_device", origin, addr)
    return Device(addr, facts.vendor_id, facts.device_id, sub_v, sub_d, facts.class_code, facts.revision,
                  header_type=facts.header_type, multifunction=facts.multifunction or addr.function > 0,
                  is_pcie=facts.is_pcie, pcie_type=facts.pcie_type, acs=facts.acs, acs_known=facts.acs_known,
                  **common)


def _device(addr: PciAddress, raw: Mapping[str, Any], origin: str, group: int | None) -> Device:
    where = _where(origin, addr)
    if not isinstance(raw, Mapping):
        raise BadInput(f"{where}: entry is not an object")
    attrs = raw.get("attrs") or {}
    links = raw.get("links") or {}
    path = raw.get("path")
    if not isinstance(attrs, Mapping) or not isinstance(links, Mapping):
        raise BadInput(f"{where}: 'attrs' and 'links' must be objects")
    path = path if isinstance(path, str) else None
    return model_device(addr, origin, path=path, parent=_parent_of(path) if path is not None else None,
                        attrs=attrs, links=links if "links" in raw else None, files=raw.get("files"),
                        cfg=config_bytes(raw, where), group=group)


def _correct_port_types(devices: dict[PciAddress, Device]) -> None:
    """Mirror probe.c set_pcie_port_type: a "downstream" port below a downstream port, a root port
    or a PCI-to-PCIe bridge (pcie_downstream_port) is really an upstream port, and an "upstream"
    port below an upstream port is really a downstream port (some switches misreport). Parents
    come first in address order, so each sees its parent's corrected type."""
    for addr, dev in sorted(devices.items()):
        parent = devices.get(dev.parent) if dev.parent else None
        if parent is None or not parent.is_pcie or dev.pcie_type is None:
            continue
        if dev.pcie_type == PCIE_DOWNSTREAM_PORT and parent.pcie_type in (
            PCIE_ROOT_PORT, PCIE_DOWNSTREAM_PORT, PCI_TO_PCIE_BRIDGE
        ):
            devices[addr] = dev._replace(pcie_type=PCIE_UPSTREAM_PORT)
        elif dev.pcie_type == PCIE_UPSTREAM_PORT and parent.pcie_type == PCIE_UPSTREAM_PORT:
            devices[addr] = dev._replace(pcie_type=PCIE_DOWNSTREAM_PORT)


def _notes(devices: tuple[Device, ...], as_root: bool | None, capabilities: bool) -> tuple[str, ...]:
    notes = []
    short = [d for d in devices if capabilities and d.config_size is not None and d.config_size <= 64]
    missing = [d for d in devices if d.config_size is None]
    if short:
        who = "not read as root" if as_root is False else "only 64 bytes readable"
        notes.append(
            f"config space beyond 64 bytes unreadable for {len(short)} device(s) ({who}): "
            "PCIe port type and ACS are unknown; run as root for the full picture"
        )
    if missing:
        notes.append(f"no config space for {len(missing)} device(s): "
                     f"{', '.join(str(d.address) for d in missing[:5])}"
                     f"{' ...' if len(missing) > 5 else ''}")
    return tuple(notes)


def validate(raw: Any, origin: str) -> dict[str, Any]:
    """Check the envelope of a capture read from `origin`; return it or raise BadInput."""
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise BadInput(f"{origin}: not a vfiokit snapshot (no \"format\": \"{FORMAT}\")")
    version = raw.get("version")
    if not isinstance(version, int) or version > VERSION or version < 1:
        raise BadInput(f"{origin}: snapshot version {version!r} is not supported "
                       f"(this vfiokit reads version {VERSION})")
    if not isinstance(raw.get("devices"), dict):
        raise BadInput(f"{origin}: snapshot has no 'devices' object")
    groups = raw.get("iommu_groups")
    if groups is not None and not isinstance(groups, dict):
        raise BadInput(f"{origin}: 'iommu_groups' must be an object or null")
    _check_types(raw, origin)
    return raw


def _check_types(raw: Mapping[str, Any], origin: str) -> None:
    """The types of every field `build_topology` reads, so that a hand-edited snapshot gets one line
    naming the field instead of a crash deep in an analysis."""

    def bad(field: str, expected: str, device: str = "") -> BadInput:
        return BadInput(f"{origin}: {device}'{field}' must be {expected}")

    captured = raw.get("captured")
    if captured is not None and not isinstance(captured, dict):
        raise bad("captured", "an object or null")
    if captured and not isinstance(captured.get("as_root"), bool | None):
        raise bad("captured.as_root", "true, false or null")
    host = raw.get("host")
    if host is not None and not isinstance(host, dict):
        raise bad("host", "an object or null")
    for key, value in (host or {}).items():
        if key in _HOST_LISTS and not (value is None or host_usage_facts.is_string_list(value)):
            raise bad(f"host.{key}", "a list of strings or null")
        if key in _HOST_KEYS and key not in _HOST_LISTS and not isinstance(value, str | None):
            raise bad(f"host.{key}", "a string or null")
    notes = raw.get("read_notes")
    if notes is not None and not host_usage_facts.is_string_list(notes):
        raise bad("read_notes", "a list of strings")
    for key, entry in raw["devices"].items():
        if not isinstance(entry, dict):
            continue  # said with the device's address by _device
        for name in ("attrs", "links"):
            if not isinstance(entry.get(name) or {}, dict) or not all(
                    isinstance(v, str) for v in (entry.get(name) or {}).values()):
                raise bad(name, "an object of strings", f"device {key}: ")
        if not (entry.get("files") is None or host_usage_facts.is_string_list(entry["files"])):
            raise bad("files", "a list of strings", f"device {key}: ")
        if not isinstance(entry.get("path"), str | None):
            raise bad("path", "a string", f"device {key}: ")
    host_usage_facts.check_layout(raw.get("host_usage"), origin)
    # Imported here: only a snapshot file holds doctor facts; the live reader never checks them.
    from vfiokit.sources import doctor_facts

    doctor_facts.check_layout(raw.get("doctor"), origin)


def _split_members(members: list[str], address_of: dict[str, PciAddress]) -> tuple[list[PciAddress], list[str]]:
    """A group's PCI functions, and its other members: the AMD IOMMU groups ACPI HID devices
    (amd_iommu acpihid_device_group) and the Intel one ACPI namespace devices
    (probe_acpi_namespace_devices), named like `AMDI0020:00` in the group's devices folder. Each
    PCI member's name and address go into `address_of`."""
    pci, others = [], []
    for m in members:
        try:
            a = address_of[m] = PciAddress.parse(m)
        except BadInput:
            others.append(m)
            continue
        pci.append(a)
    return pci, others


class Groups:
    """A capture's IOMMU groups, read in two steps so that the live reader can model each device as
    it reads it: construction parses the members (`group_of` then says each device's group), and
    `check` validates them against the devices read. Together they raise the errors a single pass
    over the groups would, in the same order."""

    def __init__(self, raw_groups: Mapping[Any, Any] | None, origin: str) -> None:
        self.present = bool(raw_groups)
        self._origin = origin
        #: per group: its key, number, PCI members in address order, other members; or the error
        #: that `check` raises when it comes to this group.
        self._parsed: list[tuple[Any, int, tuple[PciAddress, ...], list[str]] | BadInput] = []
        self.group_of: dict[PciAddress, int] = {}
        #: each PCI member's address by its name in the group folder (the name of its sysfs
        #: folder), so that a reader parses each name once.
        self.address_of: dict[str, PciAddress] = {}
        for number, members in (raw_groups or {}).items():
            try:
                n = _int(str(number), f"{origin}: iommu_groups")
                if n is None or n < 0:
                    raise BadInput(f"{origin}: iommu_groups: '{number}' is not a group number")
                if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                    raise BadInput(f"{origin}: iommu group {number}: members must be a list of addresses")
            except BadInput as e:
                self._parsed.append(e)
                continue
            pci, others = _split_members(members, self.address_of)
            addrs = tuple(sorted(pci))
            self._parsed.append((number, n, addrs, others))
            for a in addrs:
                self.group_of.setdefault(a, n)

    def check(self, device_keys: Container[str]) -> tuple[tuple[Group, ...] | None, list[str]]:
        """The groups in number order and the notes about their members that are not PCI functions;
        BadInput when a group is malformed, a device is in two groups or a member is not among
        `device_keys` (the capture's device addresses)."""
        if not self.present:
            return None, []
        built, notes, seen = [], [], {}
        for parsed in self._parsed:
            if isinstance(parsed, BadInput):
                raise parsed
            number, n, addrs, others = parsed
            if others:
                notes.append(f"IOMMU group {n} also holds {', '.join(others)}, not a PCI device "
                             "(an ACPI device the IOMMU driver grouped): not shown; vfio needs it "
                             "unbound or bound to vfio too before the group can be passed through")
            for a in addrs:
                # The kernel puts a device in one group (its iommu_group link), and only devices it has.
                if a in seen:
                    raise BadInput(f"{self._origin}: {a} is in two IOMMU groups ({seen[a]} and {n})")
                if str(a) not in device_keys:
                    raise BadInput(f"{self._origin}: iommu group {number}: {a} is not among the devices")
            built.append(Group(n, addrs))
            seen.update((a, n) for a in addrs)
        return tuple(sorted(built, key=lambda g: g.number)), notes


def host_info(host_raw: Mapping[str, Any]) -> HostInfo:
    """The host facts of a capture as the model holds them (lists become tuples)."""
    return HostInfo(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in host_raw.items() if k in _HOST_KEYS})


def topology(devices: dict[PciAddress, Device], groups: tuple[Group, ...] | None, notes: list[str], *,
             host: HostInfo, origin: str, as_root: bool | None, host_usage: Mapping[str, Any] | None,
             capabilities: bool = True) -> Topology:
    """The Topology of modelled devices and checked groups; `notes` are what the reader and the
    groups said (the notes about config space are added here; with `capabilities` False the
    reader read each config header alone on purpose: no note says the rest is unreadable)."""
    _correct_port_types(devices)
    ordered = tuple(devices[a] for a in sorted(devices))
    return Topology(
        devices=ordered,
        groups=groups,
        host=host,
        source=origin,
        notes=(*notes, *_notes(ordered, as_root, capabilities)),
        host_usage=host_usage,
    )


def build_topology(raw: Mapping[str, Any], origin: str) -> Topology:
    """Model a capture. Pure: the same capture always gives the same Topology."""
    table = Groups(raw.get("iommu_groups"), origin)
    groups, group_notes = table.check(raw["devices"])
    devices: dict[PciAddress, Device] = {}
    for key, entry in raw["devices"].items():
        addr = parse_key(key, origin)
        devices[addr] = _device(addr, entry, origin, table.group_of.get(addr))
    return topology(devices, groups, [*(raw.get("read_notes") or ()), *group_notes],
                    host=host_info(raw.get("host") or {}), origin=origin,
                    as_root=(raw.get("captured") or {}).get("as_root"), host_usage=raw.get("host_usage"))
