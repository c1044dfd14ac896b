"""`vfiokit check` rendered: a verdict as text (rich markup) or as the JSON document's keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vfiokit.errors import VfiokitError
from vfiokit.model import Device, Topology
from vfiokit.pciids import PciIds
from vfiokit.render.needs import need_detail, need_json, need_loss
from vfiokit.render.reasons import headline, reason_text

if TYPE_CHECKING:
    from vfiokit.analyses.passthrough import Reason, Verdict

_WORD = {"ALONE": "[green]alone[/green]", "HARMLESS": "[green]shares, harmless[/green]",
         "COSTLY": "[yellow]shares, costly[/yellow]", "UNSAFE": "[bold red]unsafe[/bold red]"}
_ROLE_STYLE = {"target": "bold", "host-critical": "bold red", "leaves the host": "yellow",
               "same card": "cyan", "bridge left alone": "dim"}


def _reason_facts(r: Reason) -> dict[str, str]:
    """A reason's facts; for a need, with the need's words (`loss`, `detail`) as before the need
    became data, so readers of the JSON keep them."""
    if r.need is None:
        return r.fact
    return {**r.fact, "loss": need_loss(r.need), "detail": need_detail(r.need)}


def verdict_json(v: Verdict, ids: PciIds) -> dict[str, Any]:
    from vfiokit.render.groups import device_json

    return {
        "verdict": v.level.name.lower(),
        "summary": headline(v),
        "targets": [str(a) for a in v.targets],
        "groups": list(v.groups),
        # A reason's level is the verdict it points to; "info" when it weighs nothing (ALONE).
        "reasons": [{"level": "info" if r.level.name == "ALONE" else r.level.name.lower(), "text": reason_text(r),
                     "device": None if r.address is None else str(r.address), "code": r.code, "facts": _reason_facts(r),
                     **({"need": need_json(r.need)} if r.need is not None else {})}
                    for r in v.reasons],
        "members": [
            {**device_json(m.device, ids), "role": m.role, "leaves_host": m.leaves_host,
             "critical": m.critical, "pass_along": m.pass_along,
             "needs": [need_json(n) for n in m.needs]}
            for m in v.members
        ],
    }


#: Beyond this many lines the first line (the verdict) has scrolled away on a terminal: repeat it.
LONG = 12


def next_step(v: Verdict, again: str = "") -> str:
    """The next command: attach when passing costs no other device; else find the ACS override
    that would isolate the target(s) (`simulate --alone`), since the group as it is takes others."""
    from vfiokit.analyses.passthrough import CRITICAL, LEAVES, SAME_CARD

    src = f" {again}" if again else ""
    if any(m.role in (LEAVES, CRITICAL) for m in v.members):
        alone = " ".join(f"--alone {t.short}" for t in v.targets)
        return f"vfiokit simulate{src} {alone}   # the smallest ACS override that gives it a group of its own"
    if any(r.code == "boot-gpu" for r in v.reasons):
        return ("vfiokit boot add initcall_blacklist=sysfb_init --dry-run   # release the console first "
                "(or make another GPU primary in the firmware), then attach")
    card = v.whole_slot or any(m.role == SAME_CARD for m in v.members)
    devices = [v.targets[0].short[:5]] if card else [t.short for t in v.targets]
    attach = " && ".join(f"vfiokit attach VMID {d} --pcie" for d in devices)
    return f"{attach}   # Proxmox binds {'them' if len(devices) > 1 else 'it'} to vfio-pci when the VM starts"


def verdict_text(v: Verdict, ids: PciIds, top: Topology, again: str = "") -> list[str]:
    from rich.markup import escape

    from vfiokit.analyses.passthrough import SAME_CARD, TARGET
    from vfiokit.pciids import lspci_line

    word = _WORD[v.level.name]
    if v.level.name == "COSTLY" and all(m.role in (TARGET, SAME_CARD) for m in v.members):
        word = "[yellow]costly[/yellow]"  # the cost is the target's own use: it shares with nothing
    lines = [f"Verdict: {word} - {escape(headline(v))}"]
    for g in v.groups:
        size = len(top.by_group[g].members)
        lines.append(f"IOMMU group {g} ({size} device{'s' if size > 1 else ''}); at VM start Proxmox binds "
                     "every member that is not a bridge to vfio-pci:")
        for m in (m for m in v.members if m.device.iommu_group == g):
            style = _ROLE_STYLE.get(m.role, "")
            role = f"[{style}]{m.role:<17}[/{style}]" if style else f"{m.role:<17}"
            drv = f"  [dim]driver {escape(m.device.driver)}[/dim]" if m.device.driver else ""
            lines.append(f"  {role} {escape(lspci_line(m.device, ids))}{drv}")
            lines.extend(f"  {'':<17}   [dim]{escape(need_loss(n))}: {escape(need_detail(n))}[/dim]" for n in m.needs)
    if v.reasons:
        lines.append("Why:")
        lines.extend(f"  - {escape(reason_text(r))}" for r in v.reasons if r.level.name != "HARMLESS")
        bridges = [r.address.short for r in v.reasons if r.level.name == "HARMLESS" and r.address]
        if bridges:
            lines.append(f"  - {', '.join(bridges)}: bridge{'s' if len(bridges) > 1 else ''}, which Proxmox "
                         "leaves bound to the host")
    if len(lines) > LONG:
        lines.append(lines[0])
    lines.append(f"Next: {escape(next_step(v, again))}")
    return lines


def check_marker(top: Topology) -> Callable[[Device], list[str]]:
    """For `cluster inventory`: each device's `check` verdict, e.g. "check: costly"."""
    from vfiokit.analyses.passthrough import judge

    def mark(dev: Device) -> list[str]:
        if dev.is_bridge or dev.iommu_group is None:
            return []
        try:
            return [f"check: {judge(top, [dev.address]).level.name.lower()}"]
        except VfiokitError:
            return []

    return mark
