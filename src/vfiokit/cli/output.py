"""Printing: rich markup to stdout (colour only on a terminal), notes to stderr."""

from __future__ import annotations

from collections.abc import Iterable

import click


def console():  # -> rich.console.Console; imported lazily: rich costs ~50 ms to import
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def print_markup(lines: Iterable[str]) -> None:
    c = console()
    for line in lines:
        c.print(line)


def note(text: str) -> None:
    click.echo(f"vfiokit: note: {text}", err=True)
