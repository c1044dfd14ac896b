"""Printing: rich markup to stdout (colour only on a terminal), notes to stderr."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

import click

if TYPE_CHECKING:
    from rich.console import Console

    from vfiokit.model import Topology


class _QuietStdout:
    """Standard output that, once its reader is gone (EPIPE), drops the rest quietly: the command
    runs to its end and exits with its own code. Python's default would print "Exception ignored
    ... BrokenPipeError" at exit and exit 120."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._gone = False

    def _lost(self) -> None:
        # Point the descriptor at /dev/null so that the interpreter's last flush succeeds too.
        self._gone = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._lost()
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        # Forwarded by __getattr__, a broken pipe here would reach click, which exits 1.
        if not self._gone:
            try:
                self._stream.writelines(lines)
            except BrokenPipeError:
                self._lost()

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._lost()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def quiet_broken_pipe() -> Iterator[None]:
    """Run the command with a `_QuietStdout` (only over the process's real stdout: a test's
    captured one cannot break), flushing it before the exit code is given."""
    real = sys.stdout
    if real is not sys.__stdout__ or real is None:
        yield
        return
    quiet = _QuietStdout(real)
    sys.stdout = quiet  # type: ignore[assignment]
    try:
        yield
    finally:
        quiet.flush()
        sys.stdout = real


def console() -> Console:
    """A rich console; rich is imported here, not at module load: it costs ~50 ms to import."""
    from rich.console import Console

    # Off a terminal (a pipe, a file, a forum post) rich would assume 80 columns and fold tables;
    # give them room so each row stays one line for grep and diff.
    width = None if sys.stdout.isatty() else 400
    return Console(highlight=False, soft_wrap=True, width=width)


#: Continuation lines of a wrapped line are indented this much more than the line itself.
HANG = 4
#: Lines written at once, piped or on a terminal (a 10,000-line listing is about 20 writes; a
#: million-line one is not held).
BLOCK_LINES = 500


def print_markup(lines: Iterable[str]) -> None:
    """Print rich markup lines: on a terminal wrapped with a hanging indent; piped, one record per
    line (grep and diff see whole records)."""
    c = console()
    if not sys.stdout.isatty():
        for line in lines:
            c.print(line)
        return
    from rich.text import Text

    from vfiokit.cli.terminal import TerminalWriter

    with TerminalWriter(c) as out:
        for line in lines:
            out.text(Text.from_markup(line))


def print_lines(lines: Iterable[list[tuple[str, str | None]]], column: int | None = None) -> None:
    """Print styled segments: on a terminal in colour, wrapped with a hanging indent (under `column`
    for a table whose last column starts there); as plain text otherwise (fast, so a 10,000-device
    listing piped to grep costs no rendering)."""
    if not sys.stdout.isatty():
        # In blocks, as TerminalWriter writes: a write per line is a system call per line (and a
        # reader woken for each) when Python's output is unbuffered (`python -u`, PYTHONUNBUFFERED).
        block: list[str] = []
        for line in lines:
            block.append("".join(text for text, _ in line))
            if len(block) == BLOCK_LINES:
                sys.stdout.write("\n".join(block) + "\n")
                block.clear()
        if block:
            sys.stdout.write("\n".join(block) + "\n")
        return
    from vfiokit.cli.terminal import TerminalWriter

    with TerminalWriter(console()) as out:
        for line in lines:
            out.segments(line, column)


def print_source_header(top: Topology, err: bool = False) -> None:
    """Name the source first when it is not this host (to stderr when stdout must stay a given format)."""
    from vfiokit.render.source_header import source_header

    header = source_header(top)
    if header is not None:
        click.echo(header, err=err)


def err_line(text: str) -> None:
    """One message line on stderr: on a terminal, wrapped at word boundaries with a hanging indent."""
    if sys.stderr.isatty():
        import shutil
        import textwrap

        width = shutil.get_terminal_size().columns  # COLUMNS first, then the terminal
        if width > 40:
            text = textwrap.fill(text, width, subsequent_indent=" " * HANG, break_long_words=False,
                                 break_on_hyphens=False)
    click.echo(text, err=True)


def note(text: str) -> None:
    err_line(f"vfiokit: note: {text}")
