"""What the host needs, read from host-usage facts: the PCI functions it would lose and why. Pure.

The facts are what `sources.host_usage.gather` stored (their layout is documented there); this is
their interpreter, kept apart so that analyses never import a source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vfiokit.formats.pve_hostpci import HOST_ID_RE
from vfiokit.model import PciAddress, Topology

#: What the host loses, per storage role (words used in `check`'s verdict line).
_STORAGE_LOSS = {"root": "the root file system", "boot": "the /boot file system",
                 "efi": "the EFI system partition", "swap": "the swap", "mount": "the disks"}



@dataclass(frozen=True)
class HostNeed:
    """One reason the host (or a VM) needs a PCI function."""

    address: PciAddress
    #: "storage", "network", "console", "input", "vm"
    kind: str
    #: The host cannot live without it (root/boot/EFI/swap, default route, console).
    critical: bool
    #: What the host loses, in words: "the network", "the display", "the disks", "VM 100".
    loss: str
    #: Why, with the chain: "default route (ipv4) via vmbr0 -> enp6s0 -> 0000:06:00.0".
    detail: str


def slot_functions(text: str, top: Topology) -> list[PciAddress] | None:
    """Addresses a Proxmox host id names: one function, or all functions of a slot (`01:00`).
    None when `text` is not a host id; [] when it names nothing in `top`."""
    m = HOST_ID_RE.fullmatch(text.strip().lower())
    if not m:
        return None
    domain, bus, slot = int(m[1] or "0", 16), int(m[2], 16), int(m[3], 16)
    if m[4] is not None:
        if int(m[4], 16) > 7:
            return None
        addr = PciAddress(domain, bus, slot, int(m[4], 16))
        return [addr] if addr in top.by_address else []
    return [a for a in sorted(top.by_address) if (a.domain, a.bus, a.slot) == (domain, bus, slot)]


def _address(text: Any) -> PciAddress | None:
    try:
        return PciAddress.parse(str(text))
    except Exception:  # a malformed entry in hand-edited facts is skipped, not fatal
        return None


def _arrow(chain: Iterable[str]) -> str:
    return " -> ".join(chain)


#: How each step records a need: `add(address, kind, critical, loss, detail)`.
_Add = Callable[..., None]


def _boot_vga_needs(top: Topology, add: _Add) -> None:
    for dev in top.devices:
        if dev.boot_vga:
            add(dev.address, "console", True, "the display",
                "boot VGA: the firmware started the console on it")


def _storage_needs(facts: Mapping[str, Any], add: _Add) -> None:
    for s in facts.get("storage") or ():
        role = s.get("role", "mount")
        what = {"root": "/ (root)", "boot": "/boot", "efi": f"{s.get('use')} (EFI)",
                "swap": f"swap {s.get('use')}"}.get(role, s.get("use"))
        add(_address(s.get("pci")), "storage", role != "mount", _STORAGE_LOSS.get(role, "the disks"),
            f"{what} is on {_arrow(s.get('chain') or ())}")


def _network_needs(facts: Mapping[str, Any], add: _Add) -> None:
    for n in facts.get("network") or ():
        routes = n.get("default_route") or ()
        for r in routes:
            path = [*r.get("via", ()), *n.get("chain", ())[1:]]
            add(_address(n.get("pci")), "network", True, "the network",
                f"default route ({r.get('family')}) via {_arrow(path)}")
        if not routes:
            add(_address(n.get("pci")), "network", False, "the network",
                f"interface {_arrow(n.get('chain') or ())} ({n.get('operstate') or 'state unknown'})")


def _console_and_input_needs(facts: Mapping[str, Any], add: _Add) -> None:
    for c in facts.get("console") or ():
        add(_address(c.get("pci")), "console", True, "the display",
            f"console framebuffer {_arrow(c.get('chain') or ())}"
            + (f" ({c['name']})" if c.get("name") else ""))
    for i in facts.get("input") or ():
        add(_address(i.get("pci")), "input", False, f"the USB {i.get('what', 'input device')}",
            f"{i.get('name') or i.get('what')}: {_arrow(i.get('chain') or ())}")


def _vm_needs(facts: Mapping[str, Any], top: Topology, add: _Add) -> None:
    """The functions Proxmox VMs of this node are given, raw (`host=`) or through a cluster mapping."""
    pve = facts.get("proxmox") or {}
    for vm in pve.get("vms") or ():
        value = str(vm.get("value", ""))
        later = " (pending, at its next start)" if vm.get("pending") else ""
        # qemu-server choose_hostpci_devices reserves nothing for an mdev entry (the card stays
        # with its driver and is shared), but giving the card to another VM takes it from this one.
        # An NVIDIA vGPU (`nvidia-N`, newer driver) is reserved (parse_hostpci: `nvidia`).
        if any(p.startswith("mdev=") and not p.startswith("mdev=nvidia-") for p in value.split(",")):
            later += " as a mediated device (Proxmox reserves nothing for it)"
        for part in value.split(","):
            key, eq, val = part.partition("=")
            if eq and key == "mapping":
                for mp in pve.get("mappings") or ():
                    if mp.get("id") == val and mp.get("node") in (None, pve.get("node")):
                        for path in str(mp.get("path", "")).split(";"):
                            for a in slot_functions(path, top) or ():
                                add(a, "vm", False, f"VM {vm.get('vmid')}",
                                    f"VM {vm.get('vmid')} uses it: {vm.get('key')}: {value}{later}")
            elif not eq or key == "host":
                for hostid in (val if eq else key).split(";"):
                    for a in slot_functions(hostid, top) or ():
                        add(a, "vm", False, f"VM {vm.get('vmid')}",
                            f"VM {vm.get('vmid')} uses it: {vm.get('key')}: {value}{later}")


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
