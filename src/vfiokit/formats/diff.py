"""Unified diffs as `patch` reads them: what every plan shows before it writes. Pure: no I/O."""

from __future__ import annotations

import difflib
import re


def unified_diff(old: str, new: str, fromfile: str, tofile: str) -> str:
    """A unified diff `patch` applies exactly: lines end at "\n" only (str.splitlines would also
    split at a form feed or \x1e inside a line), and a last line without newline, on either side,
    gets the "\\ No newline at end of file" marker."""
    def split(text: str) -> list[str]:
        return [ln for ln in re.split(r"(?<=\n)", text) if ln]

    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in difflib.unified_diff(split(old), split(new), fromfile, tofile))
