"""What the host needs, read from host-usage facts: the PCI functions it would lose and why. Pure.

The facts are what `sources.host_usage.gather` stored (their layout: `formats/host_usage_facts.py`);
this is their interpreter, kept apart so that analyses never import a source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from vfiokit.formats.pve_hostpci import parse_host_id
from vfiokit.model import PciAddress, Topology

#: Platform functions the host cannot give away, by class (base, sub): TrueNAS' list of
#: "System Critical" classes; PCI bridges (0x0604) are left out because Proxmox skips them.
PLATFORM_CLASSES = {
    0x0600: "host bridge",
    0x0601: "ISA bridge (LPC: firmware, TPM, legacy I/O)",
    0x0500: "RAM controller",
    0x0C05: "SMBus controller (sensors, memory SPD)",
}

#: What the host loses, per storage role (a `loses` code, worded by `render/needs.py`).
_STORAGE_LOSS = {"root": "root", "boot": "boot", "efi": "efi", "swap": "swap", "mount": "disks"}


class HostNeed(NamedTuple):
    """One reason the host (or a VM) needs a PCI function, as codes and facts (`render` words it)."""

    address: PciAddress
    #: "storage", "network", "console", "input", "vm", "driver", "platform"
    kind: str
    #: The host cannot live without it (root/boot/EFI/swap, default route, console).
    critical: bool
    #: What the host loses, a code and its object: ("display",), ("swap",), ("vm", "100"),
    #: ("usb", "keyboard"), ("platform", "0601"). Needs with the same `loses` lose the same thing.
    loses: tuple[str, ...]
    #: The fact that showed the need: "boot-vga", "storage", "default-route", "interface",
    #: "framebuffer", "usb-input", "vm-mapping", "vm-hostpci", "driver", "platform".
    code: str
    #: What that fact rests on: the chain from the use to the function, the route's family, the VM...
    facts: tuple[tuple[str, Any], ...] = ()

    @property
    def fact(self) -> dict[str, Any]:
        return dict(self.facts)


def slot_functions(text: str, top: Topology) -> list[PciAddress] | None:
    """Addresses a Proxmox host id names: one function, or all functions of a slot (`01:00`).
    None when `text` is not a host id; [] when it names nothing in `top`."""
    parsed = parse_host_id(text)
    if parsed is None:
        return None
    addr, whole_slot = parsed
    if not whole_slot:
        return [addr] if addr in top.by_address else []
    return [a for a in sorted(top.by_address) if a.same_slot(addr)]


def _address_or_none(text: Any) -> PciAddress | None:
    try:
        return PciAddress.parse(str(text))
    except Exception:  # a malformed entry in hand-edited facts is skipped, not fatal
        return None


def _chain(chain: Any) -> tuple[str, ...]:
    return tuple(str(c) for c in chain or ())


#: How each step records a need: `add(address, kind, critical, loses, code, facts)`.
_Add = Callable[..., None]


def _boot_vga_needs(top: Topology, add: _Add) -> None:
    for dev in top.devices:
        if dev.boot_vga:
            add(dev.address, "console", True, ("display",), "boot-vga", ())


def _storage_needs(facts: Mapping[str, Any], add: _Add) -> None:
    for s in facts.get("storage") or ():
        role = s.get("role", "mount")
        # The mount point is said for the roles whose words name it (an EFI partition, a swap, a mount).
        use = () if role in ("root", "boot") else (("use", s.get("use")),)
        add(_address_or_none(s.get("pci")), "storage", role != "mount", (_STORAGE_LOSS.get(role, "disks"),), "storage",
            (("role", role), *use, ("chain", _chain(s.get("chain")))))


def _network_needs(facts: Mapping[str, Any], add: _Add) -> None:
    for n in facts.get("network") or ():
        routes = n.get("default_route") or ()
        for r in routes:
            path = (*r.get("via", ()), *n.get("chain", ())[1:])
            add(_address_or_none(n.get("pci")), "network", True, ("network",), "default-route",
                (("family", r.get("family")), ("chain", _chain(path))))
        if not routes:
            add(_address_or_none(n.get("pci")), "network", False, ("network",), "interface",
                (("chain", _chain(n.get("chain"))), ("operstate", n.get("operstate"))))


def _console_and_input_needs(facts: Mapping[str, Any], add: _Add) -> None:
    for c in facts.get("console") or ():
        add(_address_or_none(c.get("pci")), "console", True, ("display",), "framebuffer",
            (("chain", _chain(c.get("chain"))), ("name", c.get("name"))))
    for i in facts.get("input") or ():
        add(_address_or_none(i.get("pci")), "input", False, ("usb", i.get("what", "input device")), "usb-input",
            (("what", i.get("what")), ("name", i.get("name")), ("chain", _chain(i.get("chain")))))


def _vm_needs(facts: Mapping[str, Any], top: Topology, add: _Add) -> None:
    """The functions Proxmox VMs of this node are given, raw (`host=`) or through a cluster mapping."""
    pve = facts.get("proxmox") or {}
    for vm in pve.get("vms") or ():
        value = str(vm.get("value", ""))
        vmid, loses = str(vm.get("vmid")), ("vm", str(vm.get("vmid")))
        said = (("vmid", vmid), ("key", vm.get("key")), ("value", value), ("pending", bool(vm.get("pending"))))
        # qemu-server choose_hostpci_devices reserves nothing for an mdev entry (the card stays
        # with its driver and is shared), but giving the card to another VM takes it from this one.
        # An NVIDIA vGPU (`nvidia-N`, newer driver) is reserved (parse_hostpci: `nvidia`).
        if any(p.startswith("mdev=") and not p.startswith("mdev=nvidia-") for p in value.split(",")):
            said = (*said, ("mdev", True))
        for part in value.split(","):
            key, eq, val = part.partition("=")
            if eq and key == "mapping":
                for mp in pve.get("mappings") or ():
                    if mp.get("id") == val and mp.get("node") in (None, pve.get("node")):
                        for path in str(mp.get("path", "")).split(";"):
                            for a in slot_functions(path, top) or ():
                                add(a, "vm", False, loses, "vm-mapping", (*said, ("mapping", val)))
            elif not eq or key == "host":
                for hostid in (val if eq else key).split(";"):
                    for a in slot_functions(hostid, top) or ():
                        add(a, "vm", False, loses, "vm-hostpci", said)


def needs(facts: Mapping[str, Any] | None, top: Topology) -> dict[PciAddress, list[HostNeed]]:
    """Map host-usage facts (and boot_vga flags) to the PCI functions the host needs. Pure.

    One step per kind of fact, in this order (the order the needs are listed in)."""
    out: dict[PciAddress, list[HostNeed]] = {}

    def add(addr: PciAddress | None, *args: Any) -> None:
        if addr is not None:
            need = HostNeed(addr, *args)
            if need not in out.setdefault(addr, []):
                out[addr].append(need)

    _boot_vga_needs(top, add)
    facts = facts or {}
    _storage_needs(facts, add)
    _network_needs(facts, add)
    _console_and_input_needs(facts, add)
    _vm_needs(facts, top, add)
    return out
