"""The one model every source yields and every analysis reads: addresses, devices, groups, topology.

Immutable records, no I/O. A field a source could not read is `None`, never guessed: a listing
has no config space, a non-root reader sees only the first 64 bytes of it.

What a source makes once per function (`Device`, `Acs`) or per group (`Group`) is a named tuple: a
large host has tens of thousands of each, and a named tuple is built in a third of a frozen
dataclass's time (0.7 us against 2.1 us for a Device), its class in a sixth (every command pays
that at its start). Change one with `_replace`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from vfiokit.errors import BadInput, DeviceNotFound

_ADDRESS_RE = re.compile(
    r"^(?:(?P<domain>[0-9a-fA-F]{1,8}):)?(?P<bus>[0-9a-fA-F]{1,2}):(?P<slot>[0-9a-fA-F]{1,2})"
    r"\.(?P<function>[0-7])$"
)

# PCIe capability "Device/Port Type" (PCIe spec 7.5.3.2; kernel include/uapi/linux/pci_regs.h).
PCIE_ENDPOINT = 0x0
PCIE_LEGACY_ENDPOINT = 0x1
PCIE_ROOT_PORT = 0x4
PCIE_UPSTREAM_PORT = 0x5
PCIE_DOWNSTREAM_PORT = 0x6
PCIE_TO_PCI_BRIDGE = 0x7
PCI_TO_PCIE_BRIDGE = 0x8
PCIE_RC_INTEGRATED_ENDPOINT = 0x9
PCIE_RC_EVENT_COLLECTOR = 0xA

PCIE_TYPE_NAMES = {
    PCIE_ENDPOINT: "endpoint",
    PCIE_LEGACY_ENDPOINT: "legacy endpoint",
    PCIE_ROOT_PORT: "root port",
    PCIE_UPSTREAM_PORT: "switch upstream port",
    PCIE_DOWNSTREAM_PORT: "switch downstream port",
    PCIE_TO_PCI_BRIDGE: "PCIe-to-PCI bridge",
    PCI_TO_PCIE_BRIDGE: "PCI-to-PCIe bridge",
    PCIE_RC_INTEGRATED_ENDPOINT: "root complex integrated endpoint",
    PCIE_RC_EVENT_COLLECTOR: "root complex event collector",
}


class PciAddress(NamedTuple):
    """A PCI function address: domain, bus, device (slot), function. Orders like `lspci`.

    A named tuple, so that hashing, equality and ordering run in C: an analysis of 50,000 functions
    hashes addresses about 3,000,000 times (as a dataclass, each was a Python call building a tuple)."""

    domain: int
    bus: int
    slot: int
    function: int

    @classmethod
    def parse(cls, text: str) -> PciAddress:
        """Parse `0000:01:00.0` or `01:00.0` (domain 0); raise `BadInput` naming the text."""
        if len(text) == 12 and text[4] == ":" and text[7] == ":" and text[10] == ".":
            # The kernel's own form (sysfs names): sliced directly, 4x faster than the regex.
            try:
                slot = int(text[8:10], 16)
                if slot <= 0x1F and text[11] in "01234567":
                    return cls(int(text[0:4], 16), int(text[5:7], 16), slot, int(text[11]))
            except ValueError:
                pass
        m = _ADDRESS_RE.match(text.strip())
        if not m:
            raise BadInput(f"'{text}' is not a PCI address (expected [DDDD:]BB:DD.F, e.g. 0000:01:00.0)")
        slot = int(m["slot"], 16)
        if slot > 0x1F:
            raise BadInput(f"'{text}' is not a PCI address (device number {slot:#x} is above 0x1f)")
        return cls(int(m["domain"] or "0", 16), int(m["bus"], 16), slot, int(m["function"]))

    def __str__(self) -> str:
        # %-formatting of the tuple itself: 0.19 us against 0.43 us for an f-string of its four
        # fields; a document of 50,000 functions writes each address at least once.
        return "%04x:%02x:%02x.%d" % self  # noqa: UP031 - measured faster, see above

    @property
    def short(self) -> str:
        """`BB:DD.F`, as lspci prints it when no domain is shown."""
        return f"{self.bus:02x}:{self.slot:02x}.{self.function}"

    @property
    def slot_id(self) -> str:
        """`DDDD:BB:DD`: the slot without function, as Proxmox writes a whole device."""
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}"

    @property
    def devfn(self) -> int:
        return (self.slot << 3) | self.function

    def same_slot(self, other: PciAddress) -> bool:
        return (self.domain, self.bus, self.slot) == (other.domain, other.bus, other.slot)


class Acs(NamedTuple):
    """The ACS extended capability (PCIe spec 7.7.8): capability and control registers."""

    cap: int
    ctrl: int


class Device(NamedTuple):
    """One PCI function as a source saw it. `None` means "the source could not tell"."""

    address: PciAddress
    vendor_id: int | None = None
    device_id: int | None = None
    subsystem_vendor_id: int | None = None
    subsystem_device_id: int | None = None
    #: 24-bit class code: base class, subclass, programming interface (0x060400 = PCI bridge).
    class_code: int | None = None
    revision: int | None = None
    #: Kernel driver bound now ("" = none bound; None = unknown).
    driver: str | None = None
    iommu_group: int | None = None
    #: The bridge this function sits behind; None for a function on a root bus (or unknown).
    parent: PciAddress | None = None
    #: The `/sys/devices` path below `/sys/devices/`, e.g. `pci0000:00/0000:00:01.1/0000:01:00.0`.
    sysfs_path: str | None = None
    #: Header type (config 0x0E bits 6:0): 0 normal, 1 PCI-to-PCI bridge, 2 CardBus bridge.
    header_type: int | None = None
    #: Header type bit 7 (config 0x0E): the slot holds several functions.
    multifunction: bool | None = None
    #: True when the function has a PCI Express capability; None when config space was not read.
    is_pcie: bool | None = None
    #: PCIe Device/Port type (PCIE_* constants above), as the kernel corrects it in set_pcie_port_type.
    pcie_type: int | None = None
    #: ACS extended capability; None both when absent and when unknown: see `acs_known`.
    acs: Acs | None = None
    #: True when the extended config space was read, so `acs is None` really means "no ACS".
    acs_known: bool = False
    #: The firmware booted the console on this device (sysfs `boot_vga`).
    boot_vga: bool | None = None
    #: Kernel reset methods (sysfs `reset_method`), () when none; None when unknown.
    reset_methods: tuple[str, ...] | None = None
    #: sysfs has a `reset` file: the kernel knows at least one way to reset the function.
    has_reset: bool | None = None
    #: Bytes of config space the source could read (64 for a non-root reader, 256 or 4096 as root).
    config_size: int | None = None
    #: SR-IOV: the physical function this virtual function belongs to.
    physfn: PciAddress | None = None
    #: Names as the source stated them (a pasted listing); sysfs sources leave them None and the
    #: renderer looks ids up in pci.ids instead.
    vendor_name: str | None = None
    device_name: str | None = None
    class_name: str | None = None

    @property
    def base_class(self) -> int | None:
        return None if self.class_code is None else self.class_code >> 16

    @property
    def class_id(self) -> int | None:
        """Base class and subclass, 16 bits (0x0604), as lspci's `[0604]`."""
        return None if self.class_code is None else self.class_code >> 8

    @property
    def is_bridge(self) -> bool:
        """A PCI-to-PCI or CardBus bridge: it has a secondary bus (Proxmox skips these at bind)."""
        if self.header_type is not None:
            return self.header_type in (1, 2)
        return self.class_id in (0x0604, 0x0607)

    @property
    def reads_all_ones(self) -> bool:
        """Its config space reads as all ones (lspci shows `(rev ff)`): the device no longer
        answers, powered off (D3cold) or fallen off the bus, often after a failed reset."""
        return self.revision == 0xFF or self.vendor_id == 0xFFFF

    @property
    def ids(self) -> str | None:
        if self.vendor_id is None or self.device_id is None:
            return None
        return f"{self.vendor_id:04x}:{self.device_id:04x}"

    @property
    def subsystem_ids(self) -> str | None:
        if self.subsystem_vendor_id is None or self.subsystem_device_id is None:
            return None
        return f"{self.subsystem_vendor_id:04x}:{self.subsystem_device_id:04x}"


class Group(NamedTuple):
    """An IOMMU group: its number and its members' addresses, in address order."""

    number: int
    members: tuple[PciAddress, ...]


class HostInfo(NamedTuple):
    """Facts about the machine around the PCI tree (all optional)."""

    kernel_release: str | None = None
    cmdline: str | None = None
    #: `/proc/cpuinfo` vendor_id: GenuineIntel, AuthenticAMD, ...
    cpu_vendor: str | None = None
    #: The CPU flags that matter here, among vmx, svm, hypervisor.
    cpu_flags: tuple[str, ...] | None = None
    #: Entries of `/sys/class/iommu` (dmar0, ivhd0, ...): Proxmox's own "IOMMU present" test.
    iommu_units: tuple[str, ...] | None = None
    hostname: str | None = None
    board: str | None = None
    #: Lines of the kernel log that matter here (ACS override, IOMMU init), when readable.
    dmesg: tuple[str, ...] | None = None
    #: Which log those lines came from: "dmesg", "journalctl -k -b", "/var/log/kern.log".
    dmesg_source: str | None = None


#: The facts of a source that tells none (a record: one value serves every topology).
NO_HOST_FACTS = HostInfo()


@dataclass(frozen=True)
class Topology:
    """Everything a source knows: devices in address order, IOMMU groups, host facts."""

    devices: tuple[Device, ...]
    #: None when the source has no IOMMU groups at all (IOMMU off); () is "enabled, but empty".
    groups: tuple[Group, ...] | None
    host: HostInfo = NO_HOST_FACTS
    #: Where this came from, for messages: "live host", "snapshot foo.json", "sample asus-...".
    source: str = ""
    #: What the source could not read, said once for the whole topology.
    notes: tuple[str, ...] = ()
    #: Facts about what the host itself uses (mounts, routes, console, VMs), when gathered.
    host_usage: Mapping[str, object] | None = None
    #: Devices whose group the source does not tell (a listing shows them outside any group); the
    #: other devices without a group are in none (the kernel left them out).
    group_unknown: frozenset[PciAddress] = frozenset()

    @cached_property
    def by_address(self) -> dict[PciAddress, Device]:
        return {d.address: d for d in self.devices}

    @cached_property
    def by_group(self) -> dict[int, Group]:
        return {g.number: g for g in self.groups or ()}

    @cached_property
    def _children(self) -> dict[PciAddress | None, tuple[Device, ...]]:
        kids: dict[PciAddress | None, list[Device]] = {}
        for d in self.devices:
            kids.setdefault(d.parent, []).append(d)
        return {k: tuple(v) for k, v in kids.items()}

    def device(self, address: PciAddress) -> Device:
        """The device at `address`; `DeviceNotFound` naming it and the source otherwise."""
        try:
            return self.by_address[address]
        except KeyError:
            where = f" in {self.source}" if self.source else ""
            raise DeviceNotFound(f"no PCI device at {address}{where}", device=str(address)) from None

    def children(self, address: PciAddress | None) -> tuple[Device, ...]:
        """Functions directly behind bridge `address` (None: those on root buses)."""
        return self._children.get(address, ())

    def ancestors(self, address: PciAddress) -> Iterator[Device]:
        """The bridges above `address`, nearest first, up to the root bus."""
        parent = self.device(address).parent
        while parent is not None and parent in self.by_address:
            bridge = self.by_address[parent]
            yield bridge
            parent = bridge.parent

    def group_of(self, address: PciAddress) -> Group | None:
        number = self.device(address).iommu_group
        return None if number is None else self.by_group.get(number)
