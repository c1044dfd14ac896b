"""`vfiokit boards [QUERY]`: the bundled boards' listings, searchable, with what matters when buying."""

from __future__ import annotations

import sys

import click

from vfiokit.errors import BadInput


@click.command()
@click.argument("query", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (versioned envelope).")
def boards(query: tuple[str, ...], as_json: bool) -> None:
    """List the bundled boards whose board, vendor, chipset or CPU hold every word of QUERY.

    Each is a listing someone posted publicly (the source line says where). Use one as a source
    with --board NAME (or board:NAME in compare): `vfiokit check 01:00.0 --board NAME`.
    Exit status: 0, or 3 when nothing matches.
    """
    from vfiokit.analyses.board_summary import search, siblings, summarize
    from vfiokit.render import boards as render
    from vfiokit.sources import boards as corpus

    every = corpus.headers()
    found = search(every, " ".join(query))
    if not found:
        raise BadInput(f"no bundled board matches '{' '.join(query)}' ({len(every)} boards; "
                       "'vfiokit boards' lists them all)")
    summaries = [summarize(h, corpus.load(h.name), siblings(h, every)) for h in found]
    if as_json:
        from vfiokit.render.envelope import envelope

        sys.stdout.write(envelope("boards", "bundled", [], boards=[render.as_json(s) for s in summaries]))
        return
    click.echo("\n".join("\n".join(render.lines(s)) for s in summaries))
    click.echo(f"vfiokit: {len(found)} of {len(every)} bundled boards", err=True)
