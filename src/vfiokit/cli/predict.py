"""`vfiokit simulate`: the groups an ACS override would give, beside today's, before any reboot."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from vfiokit.cli import completion
from vfiokit.cli.common import source_options
from vfiokit.cli.output import note, print_markup, print_renderable, print_source_header
from vfiokit.model import PciAddress, Topology
from vfiokit.pciids import PciIds
from vfiokit.render.documents import DEFAULT_OVERRIDE


@click.command()
@source_options
@click.option("--acs-override", "override_text", metavar="OPTIONS",
              help="downstream, multifunction, id:vvvv:dddd (up to 15), comma-separated, or none. Default: "
                   f"{DEFAULT_OVERRIDE}, or none on a host already booted with an override.")
@click.option("--device", "devices", multiple=True, metavar="ADDR", shell_complete=completion.addresses,
              help="Show how this device's group and its 'check' verdict change (repeatable).")
@click.option("--alone", "alone", multiple=True, metavar="ADDR", shell_complete=completion.addresses,
              help="Find the smallest override that gives this device a group of its own (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (versioned envelope).")
def simulate(source: Callable[[], Topology], override_text: str | None, devices: tuple[str, ...],
             alone: tuple[str, ...], as_json: bool) -> None:
    """Predict the IOMMU groups with (or without) pcie_acs_override, beside today's, before rebooting."""
    from vfiokit.render import simulation as view
    from vfiokit.render.documents import default_override, run_simulate

    targets = [PciAddress.parse(d) for d in devices]
    alone_targets = [PciAddress.parse(d) for d in alone]
    top = source()
    if override_text is None:
        override_text = default_override(top)
    ids = PciIds.system()
    run = run_simulate(top, ids, override_text, targets, alone_targets)
    if as_json:
        sys.stdout.write(run.document(top.source))
        return
    print_source_header(top)
    sim, reports, advice, notes = run.sim, run.reports, run.advice, run.notes
    print_markup(view.summary_lines(sim))
    print_renderable(view.side_by_side(top, sim, ids))
    for report in reports:
        print_markup(view.device_lines(report))
    for x in advice:
        print_markup(view.alone_lines(top, x, ids))
    print_markup(view.warning_lines(sim))
    for n in notes:
        note(n)
