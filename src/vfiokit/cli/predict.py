"""`vfiokit simulate`: the groups an ACS override would give, beside today's, before any reboot."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from vfiokit.cli import completion
from vfiokit.cli.common import source_again, source_options, with_target_resets
from vfiokit.cli.output import note, print_lines, print_markup, print_source_header
from vfiokit.gc_pause import gc_paused
from vfiokit.model import Topology
from vfiokit.pciids import PciIds
from vfiokit.render.documents import DEFAULT_OVERRIDE


@click.command()
@source_options
@click.option("--acs-override", "override_text", metavar="OPTIONS",
              help="downstream, multifunction, id:vvvv:dddd (up to 15), comma-separated, or none. Default: "
                   f"{DEFAULT_OVERRIDE} (what the seed article, the French post 'PCI passthrough Proxmox "
                   "et ACS override', enabled), or none on a host already booted with an override.")
@click.option("--device", "devices", multiple=True, metavar="DEVICE", shell_complete=completion.addresses,
              help="Show how this device's group and its 'check' verdict change (repeatable).")
@click.option("--alone", "alone", multiple=True, metavar="DEVICE", shell_complete=completion.addresses,
              help="Find the smallest override that gives this device (or every function of a slot, "
                   "01:00) a group of its own, and show the groups with it (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (versioned envelope).")
def simulate(source: Callable[[], Topology], override_text: str | None, devices: tuple[str, ...],
             alone: tuple[str, ...], as_json: bool) -> None:
    """Predict the IOMMU groups with (or without) pcie_acs_override, beside today's, before rebooting.

    DEVICE is an address (04:00.0), a slot (04:00), ids (10de:1430) or a class word (gpu, nic...),
    as for 'vfiokit check'."""
    from vfiokit.analyses.device_query import resolve
    from vfiokit.render import simulation as view
    from vfiokit.render.documents import run_simulate

    # The verdicts of --device judge those devices' reset only: no other reset method is read. The
    # groups alone show no driver: drivers are read for the verdicts of --device and --alone only.
    top = source(reset_methods=False, drivers=bool(devices or alone))
    # The analysis, the document and the table make objects by the hundred thousand on a large
    # host, none in a reference cycle: the cyclic collector would only walk them again and again.
    with gc_paused():
        targets = resolve(devices, top, again=source_again()) if devices else []
        top = with_target_resets(top, targets)
        # `--alone 01:00` asks for the whole card, as `check 01:00` judges it.
        alone_targets = [tuple(resolve([text], top, again=source_again())) for text in alone]
        ids = PciIds.system()
        run = run_simulate(top, ids, override_text, targets, alone_targets)
        if as_json:
            sys.stdout.write(run.document(top.source))
            return
        print_source_header(top)
        sim, reports, advice = run.sim, run.reports, run.advice
        # The answer first: the override each --alone device needs and what it changes; then the
        # groups with the override shown (the recommended one unless --acs-override names another).
        for x in advice:
            print_markup(view.alone_lines(top, x, ids))
        print_markup(view.summary_lines(sim))
        column, rows = view.side_by_side(top, sim, ids)
        print_lines(rows, column)
        for report in reports:
            print_markup(view.device_lines(report))
        print_lines(view.warning_lines(sim))
        for n in run.notes:  # after the names: pci.ids' note says the damaged lines their lookups reached
            note(n)
