"""Commands that show what is there: `groups`, `snapshot`, `samples`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from vfiokit.analyses.device_query import CLASS_WORDS
from vfiokit.cli.common import no_iommu, source_options
from vfiokit.cli.output import note, print_lines, print_markup, print_source_header
from vfiokit.errors import ExitCode, Refused, VfiokitError
from vfiokit.model import PciAddress, Topology
from vfiokit.pciids import PciIds

if TYPE_CHECKING:
    from vfiokit.analyses.vfio_binding import DriverStatus
    from vfiokit.render.groups import Marker


@click.command()
@source_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (versioned envelope).")
@click.option("--format", "fmt", type=click.Choice(["table", "seed", "markdown"]), default="table",
              metavar="FORMAT",
              help="table (default); seed: exactly what the seed article's script prints (IOMMU Group N + "
                   "lspci lines; the article is the French blog post 'PCI passthrough Proxmox et ACS "
                   "override' this project grew from); markdown: a table in a <details> block for a forum "
                   "post (read back by --listing).")
@click.option("--predict", is_flag=True,
              help="Check vfiokit's group model against the kernel: predict the groups from config space "
                   "and compare them with the real ones.")
@click.option("--class", "class_word", type=click.Choice(list(CLASS_WORDS)), default=None, metavar="WORD",
              help="Only groups holding a device of this class (gpu, nic, storage, usb... see README).")
@click.option("--group", "numbers", type=int, multiple=True, metavar="N", help="Only IOMMU group N (repeatable).")
@click.option("--ids", "ids_filter", default=None, metavar="VVVV:DDDD",
              help="Only groups holding a device with these vendor:device ids.")
@click.option("--driver", default=None, metavar="NAME", help="Only groups holding a device bound to driver NAME.")
@click.option("--shared", is_flag=True, help="Only groups with more than one endpoint (bridges do not count).")
@click.option("--anonymize", is_flag=True,
              help="With --format markdown: replace the hostname, addresses, mount points, serial numbers, VM "
                   "names and your paths by placeholders, to post the table publicly.")
def groups(source: Callable[..., Topology], as_json: bool, fmt: str, predict: bool, class_word: str | None,
           numbers: tuple[int, ...], ids_filter: str | None, driver: str | None, shared: bool,
           anonymize: bool) -> None:
    """List every IOMMU group and its devices, named as lspci names them.

    The filters keep a group when one of its devices matches them all, and show it whole."""
    from vfiokit.analyses.device_query import GroupFilter, parse_ids, select_groups

    for flag, given in (("--json", as_json), ("--predict", predict)):
        if given and fmt != "table":
            raise click.UsageError(f"--format {fmt} and {flag} cannot be combined: each is its own output")
    if anonymize and fmt != "markdown":
        raise click.UsageError("--anonymize goes with --format markdown "
                               "(for a snapshot: 'vfiokit snapshot --anonymize')")
    wanted = GroupFilter(class_word, numbers, None if ids_filter is None else parse_ids(ids_filter), driver, shared)
    if predict and not wanted.empty:
        raise click.UsageError("--predict compares every group: it cannot be combined with a filter")
    # groups shows no reset method (one file fewer per device), and without --predict no PCIe type
    # or ACS: each config space is read to its header, as lspci -nn reads it.
    top = source(reset_methods=False, capabilities=predict)
    ids = PciIds.system()
    if top.groups is None:
        _devices_without_groups(top, ids, as_json, fmt)
        raise no_iommu(top)
    if predict:
        _predict(top, as_json)
        return
    whole = top
    top = select_groups(top, wanted)
    from vfiokit.render.needs import host_marker

    # JSON gives every device's driver at the next boot; the marks only those that change.
    after, unread = _next_boot(whole, changes_only=not as_json)
    if as_json:
        from vfiokit.render.documents import groups_document

        sys.stdout.write(groups_document(top, ids, {a: r.next_boot for a, r in after.items()}, unread))
        return
    said = None
    if anonymize:
        from vfiokit.analyses.anonymize import anonymize_topology

        top, said = anonymize_topology(top)
    marker = _with_next_boot(host_marker(top), after)
    # The article's format and the Markdown for a post stay exact on stdout; the header goes to stderr.
    print_source_header(top, err=fmt in ("seed", "markdown"))
    if fmt == "seed":
        from vfiokit.render.groups import groups_seed

        sys.stdout.write(groups_seed(top, ids))
    elif fmt == "markdown":
        from vfiokit.render.markdown import groups_markdown

        sys.stdout.write(groups_markdown(top, ids, marker))
    else:
        from vfiokit.render.groups import groups_text

        print_lines(groups_text(top, ids, marker))
    # After the names: pci.ids' note says the damaged lines their lookups reached.
    for n in [*top.notes, *unread, *filter(None, [ids.missing_note]), *filter(None, [said])]:
        note(n)
    if not wanted.empty and not top.groups:
        note(f"no IOMMU group of the {len(whole.groups or ())} in {whole.source or 'this host'} matches the filters")


def _next_boot(top: Topology, changes_only: bool) -> tuple[dict[PciAddress, DriverStatus], list[str]]:
    """Each endpoint's driver at the next boot (with `changes_only`, of those whose driver changes),
    read as `bind --status` reads it, when the source is the live host or --root (a snapshot,
    sample or listing holds no boot configuration); and a note when that configuration cannot be
    read (the groups are shown all the same)."""
    from vfiokit.cli.common import source_root
    from vfiokit.cli.next_boot import next_boot_status

    root = source_root()
    if root is None:
        return {}, []
    try:
        return {r.device.address: r for r in next_boot_status(top, root, changes_only=changes_only)}, []
    except VfiokitError as e:
        return {}, [f"the drivers at the next boot are unknown: {e}"]


def _with_next_boot(marker: Marker, after: dict[PciAddress, DriverStatus]) -> Marker:
    from vfiokit.render.bind import next_boot_mark

    if not after:  # nothing changes at the next boot: no mark to add to any of 10,000 lines
        return marker
    return lambda d: [*marker(d), *next_boot_mark(after.get(d.address))]


def _devices_without_groups(top: Topology, ids: PciIds, as_json: bool, fmt: str) -> None:
    """What the Proxmox GUI shows with "No IOMMU detected": the PCI devices, under a banner, so the
    user sees the machine even before the IOMMU is on (the exit code still says 5)."""
    if as_json or fmt != "table" or not top.devices:
        return
    from vfiokit.render.groups import groups_text

    print_source_header(top)
    print_lines([[("No IOMMU groups", "bold red"),
                  (f": the {len(top.devices)} PCI devices of {top.source or 'this host'}, none passable yet", "dim")],
                 *groups_text(top, ids)])


def _predict(top: Topology, as_json: bool) -> None:
    from vfiokit.analyses.model_check import check_model
    from vfiokit.analyses.simulation import missing_config
    from vfiokit.render.simulation import model_check_json, model_check_lines

    check = check_model(top)
    notes = list(top.notes)
    if check.limited and not check.unknown:
        why, fix = missing_config(top)
        notes.append(f"{why}: devices of unknown PCIe type count as not isolating, so differences may come "
                     f"from that; {fix}")
    if as_json:
        from vfiokit.render.envelope import envelope

        sys.stdout.write(envelope("groups-predict", top.source, notes, **model_check_json(check)))
    else:
        print_source_header(top)
        print_markup(model_check_lines(check))
        for n in notes:
            note(n)
    if check.unknown:
        sys.exit(ExitCode.UNKNOWN)


@click.command()
@click.option("-o", "--output", type=click.Path(allow_dash=True), required=True,
              help="File to write ('-' for standard output).")
@click.option("--root", type=click.Path(), default="/",
              help="Read the host from this folder instead of /.")
@click.option("--from", "from_file", type=click.Path(), default=None,
              help="Rewrite this existing snapshot instead of reading the host (e.g. to anonymize it).")
@click.option("--anonymize", is_flag=True,
              help="Replace hostnames, MAC/IP addresses, mount points, serial numbers, VM names and your "
                   "paths by placeholders, to post the file publicly.")
@click.option("--force", is_flag=True, help="Overwrite FILE when it exists.")
def snapshot(output: str, root: str, from_file: str | None, anonymize: bool, force: bool) -> None:
    """Save everything vfiokit reads from this host into one file (to share or keep)."""
    from vfiokit.sources import snapshot as snap
    from vfiokit.sources import sysfs

    if output != "-" and os.path.isfile(output) and not force:
        # A snapshot is often the only record of a host before a change: never lose one silently.
        raise Refused(f"{output} exists: not overwritten", hint="add --force to replace it, or choose another -o FILE",
                      file=output)
    raw = snap.load_raw(from_file) if from_file is not None else sysfs.capture(root)
    said = None
    if anonymize:
        from vfiokit.analyses.anonymize import anonymize_capture

        raw, said = anonymize_capture(raw)
    text = snap.dumps(raw)
    if output == "-":
        sys.stdout.write(text)
    else:
        from vfiokit.edits.files import write_new_file

        write_new_file(output, text)
        n = len(raw["devices"])
        g = len(raw["iommu_groups"] or {})
        partial = "" if raw["captured"]["as_root"] else " (not root: config space beyond 64 bytes missing)"
        click.echo(f"vfiokit: wrote {output}: {n} devices, {g} IOMMU groups{partial}", err=True)
    if said:
        click.echo(f"vfiokit: {said}", err=True)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (versioned envelope).")
def samples(as_json: bool) -> None:
    """List the bundled sample machines (use one with --sample NAME)."""
    from vfiokit.sources import samples as bundled

    items = [bundled.describe(n) for n in bundled.names()]
    if as_json:
        from vfiokit.render.envelope import envelope

        sys.stdout.write(envelope("samples", "bundled", [], samples=items))
        return
    from rich.markup import escape

    print_markup(f"[bold]{escape(i['name'])}[/bold]  {escape(i['title'])}" for i in items)
