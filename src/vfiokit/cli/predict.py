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

#: What the article enabled; the default when the host runs without an override.
DEFAULT_OVERRIDE = "downstream,multifunction"


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
    from vfiokit.analyses.acs_override import effective_override, parse_override
    from vfiokit.analyses.device_change import device_report
    from vfiokit.analyses.simulation import make_alone, with_groups
    from vfiokit.analyses.simulation import simulate as run_simulation
    from vfiokit.render import simulation as view

    targets = [PciAddress.parse(d) for d in devices]
    alone_targets = [PciAddress.parse(d) for d in alone]
    top = source()
    if override_text is None:
        override_text = "none" if not effective_override(top.host).empty else DEFAULT_OVERRIDE
    override = parse_override(override_text)
    sim = run_simulation(top, override)
    predicted_top = with_groups(top, sim.predicted)
    reports = [device_report(top, predicted_top, sim, a) for a in targets]
    advice = [make_alone(top, a) for a in alone_targets]
    ids = PciIds.system()
    notes = [*top.notes, *sim.notes, *filter(None, [ids.missing_note])]
    if top.groups is None:
        notes.append(f"{top.source or 'this host'} has no IOMMU groups now: 'current' is empty and the "
                     "prediction is what the kernel will form once the IOMMU is on")
    if as_json:
        from vfiokit.render.envelope import envelope

        body = view.simulation_json(sim, reports)
        body["alone"] = [view.alone_json(x) for x in advice]
        sys.stdout.write(envelope("simulate", top.source, notes, **body))
        return
    print_source_header(top)
    print_markup(view.summary_lines(sim))
    print_renderable(view.side_by_side(top, sim, ids))
    for report in reports:
        print_markup(view.device_lines(report))
    for x in advice:
        print_markup(view.alone_lines(top, x, ids))
    print_markup(view.warning_lines(sim))
    for n in notes:
        note(n)
