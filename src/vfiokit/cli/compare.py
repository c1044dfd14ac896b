"""`vfiokit compare A B`: what changed in the IOMMU groups between two sources."""

from __future__ import annotations

import sys

import click

from vfiokit.cli.output import note, print_markup
from vfiokit.errors import ExitCode
from vfiokit.pciids import PciIds


@click.command()
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option("--common", "common_only", is_flag=True,
              help="Compare only the devices both show (for an excerpt, such as a forum post).")
@click.option("--json", "as_json_", is_flag=True, help="Machine-readable output (versioned envelope).")
def compare(a: str, b: str, common_only: bool, as_json_: bool) -> None:
    """Compare the IOMMU groups of two sources A and B.

    A and B are each: live, root:DIR, snapshot:FILE, sample:NAME, listing:FILE (listing:- reads
    standard input), or a FILE (a snapshot if it holds JSON, else a pasted listing).

    Shows groups that split or merged or were renumbered, devices that moved address, vanished or
    appeared, and devices whose group companions changed. Exit 0 when identical, 1 when they differ.
    """
    from vfiokit.analyses.compare import compare as run
    from vfiokit.render.compare import compare_json, compare_text
    from vfiokit.sources import spec

    if a in spec.STDIN and b in spec.STDIN:
        raise click.UsageError("A and B cannot both be standard input")
    c = run(spec.load(a), spec.load(b), common_only=common_only)
    ids = PciIds.system()
    # What both sources cannot tell is said once.
    notes = [f"{'A and B' if n in c.b.notes else 'A'}: {n}" for n in c.a.notes]
    notes += [f"B: {n}" for n in c.b.notes if n not in c.a.notes]
    notes += c.notes
    if c.ignored:
        only_a = sum(1 for side, _ in c.ignored if side == "A")
        notes.append(f"--common: left out {only_a} device(s) only in A and "
                     f"{len(c.ignored) - only_a} only in B")
    if as_json_:
        from vfiokit.render.envelope import envelope

        body = compare_json(c, ids)
        # After the names: pci.ids' note says the damaged lines their lookups reached.
        notes.extend(filter(None, [ids.missing_note]))
        sys.stdout.write(envelope("compare", f"{c.a.source} | {c.b.source}", notes, **body))
    else:
        print_markup(compare_text(c, ids))
        for n in [*notes, *filter(None, [ids.missing_note])]:
            note(n)
    if not c.identical:
        sys.exit(ExitCode.DIFFERENT)
