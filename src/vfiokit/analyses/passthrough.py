"""What a passthrough takes from the host: judge the IOMMU group(s) of the devices one wants to pass.

Why a group and not a device: when a Proxmox VM starts, qemu-server PCI.pm `prepare_pci_device`
calls pve-common SysFSTools.pm `pci_dev_group_bind_to_vfio`, which unbinds every device of the
IOMMU group except those with a `pci_bus` folder (bridges) and binds them to vfio-pci, without
asking whether the host uses them. The kernel requires it: a group is viable only when all its
non-bridge members are owned by vfio (drivers/vfio/group.c). So every non-bridge member leaves
the host with the target.

Pure: a `Topology` (with its host-usage facts) in, a `Verdict` out. Errors about the user's
choice of device (malformed, unknown, a bridge, no group) are raised as `VfiokitError`s.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from vfiokit.analyses.host_needs import PLATFORM_CLASSES, HostNeed, needs
from vfiokit.errors import BadInput, NoIommu
from vfiokit.model import Device, PciAddress, Topology


class Level(enum.IntEnum):
    """How much a passthrough costs the host, ordered: a worse level compares greater."""

    #: The device (with its own other functions) is its group.
    ALONE = 0
    #: The other members are bridges, which Proxmox leaves alone.
    HARMLESS = 1
    #: Other devices leave the host with it.
    COSTLY = 2
    #: A member (or the device itself) is something the host cannot live without.
    UNSAFE = 3


TARGET = "target"
SAME_CARD = "same card"
BRIDGE = "bridge left alone"
LEAVES = "leaves the host"
CRITICAL = "host-critical"

#: Drivers that mean "not used by the host": vfio-pci owns it already, or pci-stub parks it.
_PARKED = {"vfio-pci", "pci-stub"}

#: What the host loses with a function its driver uses, by class, when no host fact says more
#: (a `loses` code, worded by `render/needs.py`).
_CLASS_LOSS = {0x01: "disks", 0x02: "network", 0x03: "display", 0x0C03: "usb-ports", 0x0403: "sound"}


def _class_need(dev: Device) -> HostNeed | None:
    """A device the host has a driver on is used by it, even when no fact says for what."""
    if not dev.driver or dev.driver in _PARKED or dev.class_id is None:
        return None
    loss = _CLASS_LOSS.get(dev.class_id) or _CLASS_LOSS.get(dev.class_id >> 8)
    if loss is None:
        return None
    return HostNeed(dev.address, "driver", False, (loss,), "driver", (("driver", dev.driver),))


@dataclass(frozen=True)
class Member:
    """One function of a judged group: its role, and what the host loses with it."""

    device: Device
    role: str
    #: Why the host (or a VM) needs it; empty when nothing is known to use it.
    needs: tuple[HostNeed, ...]

    @property
    def address(self) -> PciAddress:
        return self.device.address

    @property
    def pass_along(self) -> bool:
        """Must go to the same VM (functions of the target's card: Proxmox's "All Functions")."""
        return self.role == SAME_CARD

    @property
    def critical(self) -> bool:
        return any(n.critical for n in self.needs)

    @property
    def leaves_host(self) -> bool:
        return self.role != BRIDGE


@dataclass(frozen=True)
class Reason:
    """One reason of the verdict: the level it points to, a code saying which rule spoke, and its
    facts (`device`, `group`, `with`...); for a need, the `HostNeed` itself says what is lost and
    why. `render/reasons.py` words it."""

    level: Level
    code: str
    address: PciAddress | None = None
    facts: tuple[tuple[str, str], ...] = ()
    need: HostNeed | None = None

    @property
    def fact(self) -> dict[str, str]:
        return dict(self.facts)


@dataclass(frozen=True)
class Verdict:
    level: Level
    targets: tuple[PciAddress, ...]
    groups: tuple[int, ...]
    members: tuple[Member, ...]
    reasons: tuple[Reason, ...]
    #: Without host-usage facts in this source, the facts the judgement rested on ("group membership",
    #: "device classes", "drivers", "boot_vga"); empty when it had them.
    judged: tuple[str, ...] = ()
    #: The targets name a whole slot: every function the source shows at that bus and device.
    whole_slot: bool = False

    @property
    def losses(self) -> list[tuple[tuple[str, ...], list[Member]]]:
        """What the host loses (a `HostNeed.loses`), with the members it loses it through (first seen
        first)."""
        out: dict[tuple[str, ...], list[Member]] = {}
        for m in self.members:
            for n in m.needs:
                if n.kind != "vm" and m not in out.setdefault(n.loses, []):
                    out[n.loses].append(m)
        return list(out.items())


# -- the judgement -----------------------------------------------------------------------------

def endpoints_behind(top: Topology, bridge: PciAddress) -> list[Device]:
    """The devices (not bridges) below `bridge`, through any bridges between, in address order."""
    out, todo = [], list(top.children(bridge))
    while todo:
        d = todo.pop()
        if d.is_bridge:
            todo.extend(top.children(d.address))
        else:
            out.append(d)
    return sorted(out, key=lambda d: d.address)


def _check_targets(top: Topology, targets: list[PciAddress]) -> None:
    for a in targets:
        dev = top.device(a)
        if dev.is_bridge:
            behind = endpoints_behind(top, a)
            kids = ", ".join(d.address.short for d in behind[:6]) + (f" and {len(behind) - 6} more"
                                                                      if len(behind) > 6 else "")
            raise BadInput(
                f"{a} is a PCI bridge: Proxmox never passes bridges (it leaves them to the host); "
                f"name a device behind it instead ({'behind it: ' + kids if behind else 'no device behind it'})",
                device=str(a))
    if top.groups is None:
        from vfiokit.analyses.iommu_state import diagnose

        raise NoIommu(f"{top.source or 'this host'} has no IOMMU groups, so {targets[0]} cannot be passed "
                      f"through: {diagnose(top.host).explanation}")
    for a in targets:
        if a in top.group_unknown:
            raise BadInput(f"{top.source or 'the source'} shows {a} outside any group: its IOMMU group is "
                           "unknown, so what passing it takes cannot be judged", device=str(a))
        if top.group_of(a) is None:
            raise BadInput(f"{a} is in no IOMMU group: the kernel does not isolate it (an IOMMU's own "
                           "function or a device the IOMMU driver skipped), so it cannot be passed through",
                           device=str(a))


def _role(dev: Device, targets: list[PciAddress], critical: bool) -> str:
    if dev.address in targets:
        return TARGET
    if dev.is_bridge:
        return BRIDGE
    if critical:
        return CRITICAL
    if any(dev.address.same_slot(t) for t in targets):
        return SAME_CARD
    return LEAVES


def _members(top: Topology, targets: list[PciAddress], group_numbers: list[int]) -> list[Member]:
    """Every function of the targets' groups, with its role and what the host (or a VM) needs it for."""
    used = needs(top.host_usage, top)
    members: list[Member] = []
    for number in group_numbers:
        for a in top.by_group[number].members:
            dev = top.by_address.get(a)
            if dev is None:
                continue
            n = tuple(used.get(a, ()))
            if dev.class_id in PLATFORM_CLASSES:
                n += (HostNeed(a, "platform", True, ("platform", f"{dev.class_id:04x}"), "platform"),)
            # The target's own other functions (a GPU's audio) go with it by design: not a loss.
            own_card = any(a.same_slot(t) for t in targets)
            if not own_card and not dev.is_bridge and not any(x.kind != "vm" for x in n):
                n += tuple(filter(None, [_class_need(dev)]))
            critical = any(x.critical for x in n)
            members.append(Member(dev, _role(dev, targets, critical), n))
    return members


def _need_reasons(m: Member, facts: dict[str, str]) -> list[Reason]:
    """What the host (`host-need`, `target-need`) or another VM (`vm-need`, `target-in-vm`) loses."""
    out: list[Reason] = []
    for x in m.needs:
        f = {**facts, "need": x.kind}
        if x.kind == "vm":
            code, lvl = ("target-in-vm", Level.ALONE) if m.role == TARGET else ("vm-need", Level.COSTLY)
        else:
            lvl = Level.UNSAFE if x.critical else Level.COSTLY
            code = "target-need" if m.role == TARGET else "host-need"
        out.append(Reason(lvl, code, m.address, tuple(f.items()), x))
    # Host needs first, then VM ones: the order the verdict has always listed them in.
    return sorted(out, key=lambda r: r.code in ("vm-need", "target-in-vm"))


def _target_reasons(dev: Device, facts: dict[str, str]) -> list[Reason]:
    """What the target itself brings: a host driver now, no reset method, being the boot GPU."""
    out: list[Reason] = []
    a, ft = dev.address, tuple(facts.items())
    if dev.driver and dev.driver not in _PARKED:
        out.append(Reason(Level.ALONE, "target-bound", a, (*ft, ("driver", dev.driver))))
    if dev.has_reset is False or dev.reset_methods == ():
        out.append(Reason(Level.ALONE, "no-reset", a, ft))
    if dev.boot_vga:
        out.append(Reason(Level.UNSAFE, "boot-gpu", a, ft))
    return out


def _member_reasons(m: Member, names: str) -> list[Reason]:
    """The reasons one member adds to the verdict, by its role."""
    a = m.address
    facts = {"device": a.short, "group": str(m.device.iommu_group), "with": names}
    # Config space reading all ones: nothing of the device answers, so neither the host nor a VM
    # can use it until it comes back (a power cycle, or a bus rescan after a failed reset).
    dead = [Reason(Level.ALONE, "all-ones", a, tuple(facts.items()))] if m.device.reads_all_ones else []
    if m.role == BRIDGE:
        return [*dead, Reason(Level.HARMLESS, "bridge", a, tuple(facts.items()))]
    out = dead + _need_reasons(m, facts)
    if m.role == TARGET:
        return out + _target_reasons(m.device, facts)
    if m.role == SAME_CARD:
        return [*out, Reason(Level.ALONE, "same-card", a, (*facts.items(), ("slot", a.short[:5])))]
    if m.role == LEAVES and not m.needs:
        dev = m.device
        driver = dev.driver if dev.driver and dev.driver not in _PARKED else ""
        out.append(Reason(Level.COSTLY, "leaves-host", a, (*facts.items(), ("driver", driver))))
    return out


def judge(top: Topology, targets: list[PciAddress]) -> Verdict:
    """Judge passing `targets` (all, to one VM): which group members leave the host, and at what
    cost. Raises for a bridge target, a target without group, a source without IOMMU."""
    _check_targets(top, targets)
    group_numbers = sorted({top.group_of(a).number for a in targets})  # type: ignore[union-attr]
    members = _members(top, targets, group_numbers)
    names = ", ".join(a.short for a in targets)
    reasons = [r for m in members for r in _member_reasons(m, names)]
    level = max((r.level for r in reasons), default=Level.ALONE)
    # Worst first, so the first lines say what matters (sorted() is stable within a level).
    reasons.sort(key=lambda r: -r.level)
    if level == Level.ALONE and any(m.role == BRIDGE for m in members):
        level = Level.HARMLESS
    judged = () if top.host_usage is not None else _judged(top)
    first = targets[0]
    whole_slot = len(targets) > 1 and set(targets) == {d.address for d in top.devices if d.address.same_slot(first)}
    return Verdict(level, tuple(targets), tuple(group_numbers), tuple(members), tuple(reasons), judged, whole_slot)


def _judged(top: Topology) -> tuple[str, ...]:
    """What a judgement without host-usage facts rested on. Said from what the source knew, not from
    its kind: the Proxmox API knows neither drivers nor boot_vga, an old snapshot knows both."""
    judged = ["group membership", "device classes"]
    if any(d.driver is not None for d in top.devices):
        judged.append("drivers")
    # sysfs has boot_vga on VGA-class functions only (pci-sysfs.c pci_dev_attrs_are_visible).
    if all(d.boot_vga is not None for d in top.devices if d.class_id == 0x0300):
        judged.append("boot_vga")
    return tuple(judged)
