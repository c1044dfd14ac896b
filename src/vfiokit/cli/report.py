"""`vfiokit report`: one self-contained HTML page of the PCI tree, its groups, verdicts and overrides."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from vfiokit.cli.common import source_options
from vfiokit.model import PciAddress, Topology


@click.command()
@source_options
@click.option("-o", "--output", type=click.Path(allow_dash=True), required=True,
              help="HTML file to write ('-' for standard output).")
@click.option("--alone", "alone", multiple=True, metavar="ADDR",
              help="Devices the page suggests an override for, to make each alone (repeatable). Default: "
                   "every device that shares its group, up to 64 of them.")
def report(source: Callable[[], Topology], output: str, alone: tuple[str, ...]) -> None:
    """Write one HTML page (no network resources) of the PCI tree, IOMMU groups, check verdicts and ACS overrides."""
    from vfiokit.cli.common import no_iommu
    from vfiokit.pciids import PciIds
    from vfiokit.render.report import collect, report_html

    targets = [PciAddress.parse(a) for a in alone]
    top = source()
    if top.groups is None:
        raise no_iommu(top)
    for a in targets:
        top.device(a)
    data = collect(top, PciIds.system(), targets or None)
    page = report_html(data)
    if output == "-":
        sys.stdout.write(page)
        return
    from vfiokit.edits.files import write_new_file

    write_new_file(output, page)
    groups = len(data.groups["groups"])
    click.echo(f"vfiokit: wrote {output}: {len(top.devices)} devices, {groups} IOMMU groups, "
               f"{len(page) // 1024} KiB", err=True)
