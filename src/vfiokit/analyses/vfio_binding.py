"""Handing devices to vfio-pci: which devices an id list catches, which functions a bind takes,
and how a persistent bind must name them (by ids or by address). Pure: no I/O.
"""

from __future__ import annotations

from typing import NamedTuple

from vfiokit.analyses.host_needs import HostNeed, needs
from vfiokit.model import Device, PciAddress, Topology

VFIO = "vfio-pci"

#: Drivers that claim a class of devices before vfio-pci when nothing orders them (a softdep makes
#: modprobe load vfio-pci first): GPUs (0x0300/0x0302) and HD audio (0x0403).
CLASS_DRIVERS = {0x0300: ("nouveau", "nvidia", "amdgpu", "radeon", "i915"),
                 0x0302: ("nouveau", "nvidia", "amdgpu"),
                 0x0403: ("snd_hda_intel",)}


def id_matches(dev: Device, pci_id: str) -> bool:
    """Does `pci_id` (vvvv:dddd[:ssss:ssss], as parsed by formats.modprobe.parse_ids) catch `dev`?
    As vfio-pci's dynamic ids (`pci_match_one_device`): vendor and device, then the subsystem pair
    when given."""
    parts = pci_id.split(":")
    if dev.ids != ":".join(parts[:2]):
        return False
    return len(parts) == 2 or dev.subsystem_ids == ":".join(parts[2:])


class IdsCatch(NamedTuple):
    """What an `ids=` list does on this host: every device it catches, and the host's critical
    needs among them."""

    matches: dict[str, tuple[Device, ...]]
    critical: tuple[HostNeed, ...]


def ids_catch(top: Topology, ids: list[str]) -> IdsCatch:
    """Every device each id catches (bridges too: vfio-pci refuses them, but they are named) and
    what the host cannot live without among them (`host_needs`)."""
    matches = {i: tuple(d for d in top.devices if id_matches(d, i)) for i in ids}
    host = needs(top.host_usage, top)
    critical = tuple(n for devs in matches.values() for d in devs for n in host.get(d.address, ())
                     if n.critical)
    return IdsCatch(matches, critical)


def bind_functions(top: Topology, targets: list[PciAddress]) -> list[PciAddress]:
    """What a bind takes: every function of each target's IOMMU group that is not a bridge, as
    Proxmox does at VM start (qemu-server `PCI.pm` binds the whole group's endpoints), in order."""
    out: set[PciAddress] = set()
    for t in targets:
        group = top.group_of(t)
        members = group.members if group is not None else (t,)
        out.update(a for a in members if not top.device(a).is_bridge)
    return sorted(out)


class Persistent(NamedTuple):
    """How `bind --persistent` names the devices at boot."""

    #: "ids" (modprobe.d `options vfio-pci ids=`) or "address" (initramfs hook, driver_override).
    by: str
    ids: tuple[str, ...]
    addresses: tuple[PciAddress, ...]
    #: Drivers that get a `softdep DRIVER pre: vfio-pci`.
    softdeps: tuple[str, ...]
    #: Other devices (not bound) that share an id with a bound one: why the choice is "address".
    others: tuple[Device, ...]


def persistent_choice(top: Topology, functions: list[PciAddress]) -> Persistent:
    """By ids only when no other device on the host has those ids (else `ids=` would take it too,
    such as the identical NVMe that holds /); otherwise by address, as Unraid's vfio-pci.cfg."""
    devs = [top.device(a) for a in functions]
    ids = tuple(dict.fromkeys(d.ids for d in devs if d.ids))
    others = tuple(d for d in top.devices if d.address not in functions and d.ids in ids)
    drivers: list[str] = []
    for d in devs:
        for drv in ((d.driver,) if d.driver and d.driver != VFIO else ()) + CLASS_DRIVERS.get(d.class_id or 0, ()):
            if drv not in drivers:
                drivers.append(drv)
    by = "address" if others or any(d.ids is None for d in devs) else "ids"
    return Persistent(by, ids, tuple(functions), tuple(drivers), others)


def losses_now(top: Topology, functions: list[PciAddress]) -> list[HostNeed]:
    """What the host stops using the moment these functions leave their drivers: every known need
    (the console on the boot GPU, a NIC's link, a disk), critical or not."""
    host = needs(top.host_usage, top)
    return [n for a in functions for n in host.get(a, ())]


def framebuffer_release(kernel_release: str | None) -> str:
    """The kernel parameter that keeps the firmware framebuffer off the GPU's BAR: since 5.15 the
    framebuffer is registered by `sysfb_init` (drivers/firmware/sysfb.c), which
    `initcall_blacklist=sysfb_init` skips; before, efifb registered it itself (`video=efifb:off`)."""
    try:
        major, minor = (int(x) for x in (kernel_release or "").split("-")[0].split(".")[:2])
    except ValueError:
        return "initcall_blacklist=sysfb_init"
    return "initcall_blacklist=sysfb_init" if (major, minor) >= (5, 15) else "video=efifb:off"


class DriverStatus(NamedTuple):
    """A function's driver now and at the next boot, and what decides the latter."""

    device: Device
    now: str | None
    #: "vfio-pci", or the driver it had before vfio-pci (None: unknown, whatever matches at boot).
    next_boot: str | None
    why: str

    @property
    def differs(self) -> bool:
        return (self.now == VFIO) != (self.next_boot == VFIO)


def driver_status(top: Topology, cmdline_ids: list[str], modprobe_ids: dict[str, str],
                  hook_addresses: tuple[str, ...], bound: dict[str, str | None]) -> list[DriverStatus]:
    """For every endpoint: who takes it at the next boot (vfio-pci by the command line's ids, a
    modprobe.d `ids=`, or vfiokit's initramfs script; otherwise its own driver)."""
    hooks = set(hook_addresses)
    return [_status(d, cmdline_ids, modprobe_ids, hooks, bound) for d in top.devices if not d.is_bridge]


def next_boot_changes(top: Topology, cmdline_ids: list[str], modprobe_ids: dict[str, str],
                      hook_addresses: tuple[str, ...], bound: dict[str, str | None]) -> list[DriverStatus]:
    """The rows of `driver_status` whose driver at the next boot differs from today's
    (`DriverStatus.differs`). Only a device on vfio-pci now, in the bind record or named by the
    configuration can differ: on a host of 10,000 functions, the others cost a comparison each."""
    hooks = set(hook_addresses)
    listed = hooks.union(bound)
    by_ids = bool(cmdline_ids or modprobe_ids)
    rows = (_status(d, cmdline_ids, modprobe_ids, hooks, bound) for d in top.devices
            if (by_ids or d.driver == VFIO or (listed and str(d.address) in listed)) and not d.is_bridge)
    return [r for r in rows if r.differs]


def _status(d: Device, cmdline_ids: list[str], modprobe_ids: dict[str, str], hooks: set[str],
            bound: dict[str, str | None]) -> DriverStatus:
    """One endpoint's row of `driver_status`."""
    addr = str(d.address)
    if addr in hooks:
        return DriverStatus(d, d.driver, VFIO, "by address (vfiokit's initramfs script)")
    for i in cmdline_ids:
        if id_matches(d, i):
            return DriverStatus(d, d.driver, VFIO, f"vfio-pci.ids={i} on the kernel command line")
    for i, path in modprobe_ids.items():
        if id_matches(d, i):
            return DriverStatus(d, d.driver, VFIO, f"ids={i} in {path}")
    return DriverStatus(d, d.driver, bound.get(addr, d.driver if d.driver != VFIO else None),
                        "no vfio-pci configuration names it")
