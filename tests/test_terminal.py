"""On a terminal, `print_lines` and `print_markup` write what rich's own `Console.print` writes for
the same lines (colours and styles, NO_COLOR, TERM=dumb, wrapping with a hanging indent), without
its cost per line (cli/terminal.py)."""

from __future__ import annotations

import io
import re
import sys

import pytest
from rich.console import Console
from rich.text import Text

from vfiokit.cli import output
from vfiokit.cli.output import HANG

LONG_NAME = ("  0000:0a:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1080] "
             "[10de:1b80] (rev a1)")
LINES = [
    [("IOMMU group 13", "bold"), (" (2 devices)", "dim")],
    [(LONG_NAME, None), ("  ", None), ("driver nouveau", "cyan"), (" · ", None), ("boot VGA", "magenta"),
     (" · ", None), ("host needs: the screen of the local console", "yellow")],
    [("Node pve1", "bold underline")],
    [("  no IOMMU groups", "red"), (" (every device has iommugroup -1)", None)],
    [("", "red"), ("after an empty styled segment", "bold red"), ("", None)],
    [("a tab\there, a bell\x07 and a carriage return\r", "green")],
    [("wide 日本語 text " * 8, "cyan")],
    [("a" * 150, "yellow"), (" then a word longer than the line", None)],
    [("trailing blanks    ", "dim")],
]
MARKUP = [
    "[bold]bold [red]and red inside[/red][/bold] then plain",
    "  [dim]indented, " + "a few words " * 15 + "[/dim]",
    "[yellow]two\nlines[/yellow]",
    "plain",
]


class Terminal(io.StringIO):
    writes = 0

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def rich_prints(c: Console, text: Text) -> None:
    """What vfiokit printed through rich, one `Console.print` per line of the hanging wrap."""
    plain = text.plain
    hang = len(plain) - len(plain.lstrip(" ")) + HANG
    pieces = [text]
    if len(plain) > c.width > hang + 20:
        wrapped = list(text.wrap(c, c.width - hang, overflow="fold"))
        pieces = [wrapped[0], *(Text(" " * hang) + p for p in wrapped[1:])]
    for piece in pieces:
        c.print(piece, soft_wrap=True)


@pytest.fixture
def terminal_env(monkeypatch):
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLORTERM", "JUPYTER_COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    return monkeypatch


def shown(monkeypatch, print_them) -> str:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    print_them()
    return terminal.getvalue()


@pytest.mark.parametrize("env", [{}, {"NO_COLOR": "1"}, {"TERM": "dumb"}, {"COLORTERM": "truecolor"}])
@pytest.mark.parametrize("columns", [24, 80, 200])
def test_a_terminal_gets_what_rich_prints(terminal_env, env, columns):
    terminal_env.setenv("COLUMNS", str(columns))
    for name, value in env.items():
        terminal_env.setenv(name, value)

    def ours() -> None:
        output.print_lines(LINES)
        output.print_markup(MARKUP)

    def riches() -> None:
        c = output.console()
        for text in [*(Text.assemble(*line) for line in LINES), *map(Text.from_markup, MARKUP)]:
            rich_prints(c, text)

    got = shown(terminal_env, ours)
    assert got == shown(terminal_env, riches)
    # what the comparison covered: styles (none on a dumb terminal, no colours with NO_COLOR) and wrapping
    codes = set(re.findall(r"\x1b\[([0-9;]*)m", got))
    assert not codes if env.get("TERM") == "dumb" else {"1", "2", "4", "0"} <= {c for cs in codes for c in
                                                                                 cs.split(";")}
    colours = {c for cs in codes for c in cs.split(";") if c.startswith(("3", "9"))}
    assert not colours if "NO_COLOR" in env or "TERM" in env else {"36", "33", "35", "31"} <= colours
    plain = re.sub(r"\x1b\[[0-9;]*m", "", got)
    continued = [ln for ln in plain.splitlines() if re.match(rf" {{{2 + HANG}}}\S", ln)]  # under "  0000:0a..."
    assert bool(continued) == (columns == 80 or "TERM" in env)  # rich takes a dumb terminal as 80 wide


def test_lines_are_written_in_batches_not_one_write_each(terminal_env):
    terminal_env.setenv("COLUMNS", "200")
    terminal = Terminal()
    terminal_env.setattr(sys, "stdout", terminal)
    output.print_lines([(f"  device {i}", None), ("  ", None), ("driver vfio-pci", "cyan")] for i in range(2000))
    assert terminal.getvalue().count("\n") == 2000
    assert terminal.writes <= 5


class Pipe(Terminal):
    def isatty(self) -> bool:
        return False


def test_piped_lines_are_written_in_batches_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under PYTHONUNBUFFERED (or python -u) each write is a system call, and a reader woken for it.
    pipe = Pipe()
    monkeypatch.setattr(sys, "stdout", pipe)
    output.print_lines([(f"  device {i}", None), ("  ", None), ("driver vfio-pci", "cyan")] for i in range(2000))
    assert pipe.getvalue().splitlines() == [f"  device {i}  driver vfio-pci" for i in range(2000)]
    assert pipe.writes <= 5


def test_a_table_row_too_wide_goes_on_under_its_last_column(terminal_env):
    """`simulate`'s table on a narrow terminal: the group numbers stay whole on the row's first
    line, and the device's name goes on under the device column, as a table cell wraps."""
    terminal_env.setenv("COLUMNS", "60")
    terminal_env.setenv("NO_COLOR", "1")
    rows = [[("   12", "yellow"), ("  ", None), ("       13", "yellow"), ("  ", None), (LONG_NAME.strip(), "yellow")],
            [("    1", None), ("  ", None), ("        1", None), ("  ", None), ("00:01.0 Host bridge", None)]]
    got = shown(terminal_env, lambda: output.print_lines(rows, column=18)).splitlines()
    assert got[0].startswith("   12         13  0000:0a:00.0 VGA compatible")
    wrapped = got[1:-1]
    assert wrapped and all(ln.startswith(" " * 18) and ln[18] != " " and len(ln.rstrip()) <= 60 for ln in wrapped)
    assert " ".join(ln.strip() for ln in got[:-1]).endswith("[10de:1b80] (rev a1)")
    assert got[-1] == "    1          1  00:01.0 Host bridge"
