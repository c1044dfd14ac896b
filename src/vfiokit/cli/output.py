"""Printing: rich markup to stdout (colour only on a terminal), notes to stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rich.console import Console

    from vfiokit.model import Topology


def console() -> Console:
    """A rich console; rich is imported here, not at module load: it costs ~50 ms to import."""
    from rich.console import Console

    # Off a terminal (a pipe, a file, a forum post) rich would assume 80 columns and fold tables;
    # give them room so each row stays one line for grep and diff.
    width = None if sys.stdout.isatty() else 400
    return Console(highlight=False, soft_wrap=True, width=width)


def print_renderable(renderable: object) -> None:
    """Print a rich table or panel; off a terminal, without the padding rich adds to each row."""
    c = console()
    if sys.stdout.isatty():
        c.print(renderable)
        return
    with c.capture() as captured:
        c.print(renderable)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def print_markup(lines: Iterable[str]) -> None:
    c = console()
    for line in lines:
        c.print(line)


def print_lines(lines: Iterable[list[tuple[str, str | None]]]) -> None:
    """Print styled segments: through rich on a terminal, as plain text otherwise (fast, so a
    10,000-device listing piped to grep costs no rendering)."""
    if not sys.stdout.isatty():
        sys.stdout.write("".join("".join(text for text, _ in line) + "\n" for line in lines))
        return
    from rich.text import Text

    c = console()
    for line in lines:
        c.print(Text.assemble(*line))


def print_source_header(top: Topology, err: bool = False) -> None:
    """Name the source first when it is not this host (to stderr when stdout must stay a given format)."""
    from vfiokit.render.source_header import source_header

    header = source_header(top)
    if header is not None:
        click.echo(header, err=err)


def note(text: str) -> None:
    click.echo(f"vfiokit: note: {text}", err=True)
