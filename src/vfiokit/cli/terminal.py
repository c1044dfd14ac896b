"""Styled lines to a terminal, byte for byte as rich's `Console.print` writes them, at a fraction
of its cost per line.

`Console.print` asks for the terminal's size, renders through its whole pipeline and writes and
flushes on every call: ~0.15 ms a line, so 10,000 device lines took three times as long on a
terminal as piped. Here each style's escape codes are asked of the console once (so the colour
system, NO_COLOR and TERM=dumb get rich's own answer), a line that fits the width is written as its
segments between those codes, only a longer line goes through rich's word wrapping, and lines are
written in batches. Anything rich would transform (a tab, a line break, a control character) goes
through rich itself. tests/test_terminal.py holds this against rich's own output.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType

from rich.console import Console
from rich.style import Style
from rich.text import Text

from vfiokit.cli.output import BLOCK_LINES, HANG

#: Rendered between a style's codes to find them; no escape sequence holds a NUL.
_MARK = "\0"


class TerminalWriter:
    """`with TerminalWriter(console) as out: out.segments(line)` or `out.text(text)` per line."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._width = console.width  # COLUMNS, else the terminal's; rich would ask it on every line
        self._codes: dict[str | Style, tuple[str, str]] = {}
        self._pending: list[str] = []

    def __enter__(self) -> TerminalWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.flush()

    def segments(self, line: Iterable[tuple[str, str | None]], column: int | None = None) -> None:
        """A line of (text, style name) segments, as `Text.assemble(*line)` through `text`."""
        line = list(line)
        plain = "".join([text for text, _ in line])
        # Text.assemble would strip control characters and the print expand tabs: leave those to rich.
        if len(plain) > self._width or not plain.isprintable():
            self.text(Text.assemble(*line), column)
            return
        out = []
        for text, style in line:
            if style and text:
                before, after = self._around(style)
                out.append(f"{before}{text}{after}")
            else:
                out.append(text)
        out.append("\n")
        self._add("".join(out))

    def text(self, text: Text, column: int | None = None) -> None:
        """A rich Text: a line longer than the width is cut at word boundaries, continuation lines
        indented under the line's own indent plus HANG (not when the terminal is too narrow for
        that to leave 20 columns). With `column` (a table's last column), what is before it stays
        whole on the first line and only the last cell is cut, its continuation lines under it."""
        plain = text.plain
        if column is not None and len(plain) > self._width > column + 20:
            pieces = text[column:].wrap(self._console, self._width - column, overflow="fold")
            self._line(text[:column] + pieces[0])
            for piece in pieces[1:]:
                self._line(Text(" " * column) + piece)
            return
        hang = len(plain) - len(plain.lstrip(" ")) + HANG
        if len(plain) <= self._width or self._width <= hang + 20:
            self._line(text)
            return
        pieces = text.wrap(self._console, self._width - hang, overflow="fold")
        self._line(pieces[0])
        for piece in pieces[1:]:
            self._line(Text(" " * hang) + piece)

    def flush(self) -> None:
        if self._pending:
            file = self._console.file
            file.write("".join(self._pending))
            file.flush()
            self._pending.clear()

    def _line(self, text: Text) -> None:
        """One line as `console.print(text, soft_wrap=True)` writes it."""
        plain = text.plain
        if len(plain) > self._width or "\n" in plain or "\t" in plain:
            # Past the width rich trims trailing blanks; it splits at line breaks and expands tabs.
            self.flush()
            self._console.print(text, soft_wrap=True)
            return
        out = []
        for segment in text.render(self._console):
            if segment.style:
                before, after = self._around(segment.style)
                out.append(f"{before}{segment.text}{after}")
            else:
                out.append(segment.text)
        out.append("\n")
        self._add("".join(out))

    def _around(self, style: str | Style) -> tuple[str, str]:
        """What the console writes before and after a text in `style` (nothing without colour)."""
        codes = self._codes.get(style)
        if codes is None:
            with self._console.capture() as captured:
                self._console.print(Text(_MARK, style=style), end="", soft_wrap=True)
            before, _, after = captured.get().partition(_MARK)
            codes = self._codes[style] = (before, after)
        return codes

    def _add(self, rendered: str) -> None:
        self._pending.append(rendered)
        if len(self._pending) >= BLOCK_LINES:
            self.flush()
