"""`vfiokit check DEVICE...`: what passing these devices to a VM takes from the host.

Exit codes a script can use: 0 alone or harmless, 10 costly, 11 unsafe, 4 not found
(3 malformed address or bridge, 5 no IOMMU).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from vfiokit.cli.common import source_options
from vfiokit.cli.output import note, print_markup
from vfiokit.errors import ExitCode
from vfiokit.model import Topology
from vfiokit.pciids import PciIds

if TYPE_CHECKING:
    from vfiokit.analyses.passthrough import Verdict

_EXIT = {"ALONE": ExitCode.OK, "HARMLESS": ExitCode.OK, "COSTLY": ExitCode.COSTLY, "UNSAFE": ExitCode.UNSAFE}
_WORD = {"ALONE": "[green]alone[/green]", "HARMLESS": "[green]shares, harmless[/green]",
         "COSTLY": "[yellow]shares, costly[/yellow]", "UNSAFE": "[bold red]unsafe[/bold red]"}
_ROLE_STYLE = {"target": "bold", "host-critical": "bold red", "leaves the host": "yellow",
               "same card": "cyan", "bridge left alone": "dim"}


def verdict_text(v: Verdict, ids: PciIds, top: Topology) -> list[str]:
    from rich.markup import escape

    from vfiokit.analyses.passthrough import SAME_CARD, TARGET, headline
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
            lines.extend(f"  {'':<17}   [dim]{escape(n.loss)}: {escape(n.detail)}[/dim]" for n in m.needs)
    if v.reasons:
        lines.append("Why:")
        lines.extend(f"  - {escape(r.text)}" for r in v.reasons if r.level.name != "HARMLESS")
        bridges = [r.address.short for r in v.reasons if r.level.name == "HARMLESS" and r.address]
        if bridges:
            lines.append(f"  - {', '.join(bridges)}: bridge{'s' if len(bridges) > 1 else ''}, which Proxmox "
                         "leaves bound to the host")
    return lines


@click.command()
@click.argument("devices", nargs=-1, required=True, metavar="DEVICE...")
@source_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (versioned envelope).")
def check(devices: tuple[str, ...], source: Callable[[], Topology], as_json: bool) -> None:
    """Say what passing DEVICE to a VM takes from the host.

    DEVICE is a PCI address with or without domain (07:00.0, 0000:07:00.0), several of them, or
    BB:DD for every function of a slot (01:00), as Proxmox's hostpci accepts.
    Exit status: 0 alone/harmless, 10 costly, 11 unsafe, 4 no such device.
    """
    from vfiokit.analyses.passthrough import judge, parse_targets

    top = source()
    targets = parse_targets(devices, top)
    verdict = judge(top, targets)
    ids = PciIds.system()
    notes = [*top.notes, *verdict.notes, *filter(None, [ids.missing_note])]
    if as_json:
        from vfiokit.render.documents import check_document

        sys.stdout.write(check_document(top, verdict, ids))
    else:
        print_markup(verdict_text(verdict, ids, top))
        for n in notes:
            note(n)
    code = _EXIT[verdict.level.name]
    if code != ExitCode.OK:
        # Not an error: the verdict itself is the answer; the code lets a script act on it.
        raise SystemExit(int(code))
