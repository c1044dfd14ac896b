"""Kernel command line text: add and remove parameters, keeping everything else as the user wrote it.

Pure: text in, text out. Used for `GRUB_CMDLINE_LINUX_DEFAULT`'s value and `/etc/kernel/cmdline`.

The rules follow the kernel's own parser:
- a parameter is a run of non-blank characters, where double quotes may enclose blanks
  (`lib/cmdline.c` `next_arg`); everything after a lone `--` goes to init, not the kernel;
- names are compared with dash and underscore as one character (`kernel/params.c` `parameqn`,
  `dash2underscore`), so `vfio-pci.ids` and `vfio_pci.ids` are one key;
- a later `key=value` overrides an earlier one for ordinary and module parameters, so adding
  `a=1` where `a=2` is set replaces it (in place) instead of appending a second, confusing copy;
- a few parameters take comma lists whose items accumulate (`vfio-pci.ids`: `vfio_pci_fill_ids`;
  `pcie_acs_override`: the ACS override patch's `pcie_acs_override_setup`): adding merges items;
- `console=` may be given several times, each one adding a console: adding appends.

Parameters the caller did not name keep their text, order and surrounding blanks; adding what
is already there changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from vfiokit.errors import BadInput

#: Keys whose value is a comma list that accumulates (normalized: underscores).
LIST_KEYS = frozenset({"vfio_pci.ids", "pcie_acs_override"})
#: Keys the kernel accepts several times, each occurrence adding something.
REPEATABLE_KEYS = frozenset({"console"})

_TOKEN = re.compile(r'(?:[^\s"]|"[^"]*"?)+')
# What vfiokit itself writes: no blanks, quotes, or shell specials (the value also lands inside
# a shell-quoted GRUB variable, so `$`, backquote and backslash are out).
_SAFE_PARAM = re.compile(r"[A-Za-z0-9_.\-]+(?:=[^\s\"'`$\\;&|<>()]*)?")


def key_of(token: str) -> str:
    """The comparison key of one parameter: its name with dashes as underscores."""
    return token.partition("=")[0].replace("-", "_")


def _value(token: str) -> str | None:
    _, eq, value = token.partition("=")
    return value if eq else None


def _items(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


def _same_item(a: str, b: str) -> bool:
    # vfio-pci ids are hex (`10de:1b80` == `10DE:1B80`); the ACS override words are lower case.
    return a.lower() == b.lower()


def check_param(param: str) -> str:
    """Validate a parameter a user asked for; return it, or raise BadInput naming it."""
    if not _SAFE_PARAM.fullmatch(param):
        raise BadInput(f"'{param}' is not a kernel parameter vfiokit can write (expected name or "
                       "name=value without blanks, quotes, $, backquote or backslash)")
    if param == "--":
        raise BadInput("'--' separates init's arguments; it is not a parameter")
    return param


class _Line:
    """A command line as entries [blank-before, token] plus the trailing blanks, edited in place.
    A plain class: a dataclass costs 0.2 ms to define at every start, and this one needs no
    comparison or repr."""

    __slots__ = ("entries", "trail")

    def __init__(self, entries: list[list[str]], trail: str) -> None:
        self.entries = entries
        self.trail = trail

    @classmethod
    def parse(cls, text: str) -> _Line:
        entries: list[list[str]] = []
        pos = 0
        for m in _TOKEN.finditer(text):
            entries.append([text[pos:m.start()], m.group()])
            pos = m.end()
        return cls(entries, text[pos:])

    def text(self) -> str:
        return "".join(sep + tok for sep, tok in self.entries) + self.trail

    def kernel_end(self) -> int:
        """Index of the `--` entry (init's arguments follow), or len(entries)."""
        for i, (_, tok) in enumerate(self.entries):
            if tok == "--":
                return i
        return len(self.entries)

    def indexes(self, key: str) -> list[int]:
        return [i for i in range(self.kernel_end()) if key_of(self.entries[i][1]) == key]

    def delete(self, i: int) -> None:
        sep = self.entries[i][0]
        del self.entries[i]
        if i == 0 and self.entries:
            # Keep the line's leading blanks where they were; the next entry's own blank goes.
            self.entries[0][0] = sep

    def insert(self, token: str) -> None:
        """Add a token after the last kernel parameter (before `--`)."""
        end = self.kernel_end()
        if end == 0 and self.entries:
            self.entries.insert(0, [self.entries[0][0], token])
            self.entries[1][0] = " "
        else:
            self.entries.insert(end, ["" if not self.entries else " ", token])


def tokens(text: str) -> tuple[str, ...]:
    """The kernel parameters of `text` (before `--`), as written."""
    line = _Line.parse(text)
    return tuple(tok for _, tok in line.entries[: line.kernel_end()])


def _add_one(line: _Line, param: str) -> None:
    key, value = key_of(param), _value(param)
    where = line.indexes(key)
    if not where:
        line.insert(param)
        return
    if key in REPEATABLE_KEYS:
        if not any(line.entries[i][1] == param for i in where):
            line.entries.insert(where[-1] + 1, [" ", param])
        return
    first = where[0]
    written = line.entries[first][1]
    if key in LIST_KEYS:
        merged: list[str] = []
        for item in [*(x for i in where for x in _items(_value(line.entries[i][1]))), *_items(value)]:
            if not any(_same_item(item, m) for m in merged):
                merged.append(item)
        name = written.partition("=")[0]
        new = f"{name}={','.join(merged)}" if merged else param
    else:
        new = written if _value(written) == value else param
    line.entries[first][1] = new
    for i in reversed(where[1:]):
        line.delete(i)


def _remove_one(line: _Line, param: str) -> None:
    key, value = key_of(param), _value(param)
    for i in reversed(line.indexes(key)):
        written = line.entries[i][1]
        if value is None:
            line.delete(i)
        elif key in LIST_KEYS:
            gone = _items(value)
            kept = [x for x in _items(_value(written)) if not any(_same_item(x, g) for g in gone)]
            if kept:
                line.entries[i][1] = f"{written.partition('=')[0]}={','.join(kept)}"
            else:
                line.delete(i)
        elif _value(written) == value:
            line.delete(i)


def add(text: str, params: Iterable[str]) -> str:
    """`text` with each parameter added (replacing, merging or appending as the rules say)."""
    line = _Line.parse(text)
    for p in params:
        _add_one(line, p)
    return line.text()


def remove(text: str, params: Iterable[str]) -> str:
    """`text` without the parameters: `key` removes every `key[=...]`, `key=value` only that value
    (for a list key, only those items)."""
    line = _Line.parse(text)
    for p in params:
        _remove_one(line, p)
    return line.text()


def has(text: str, param: str) -> bool:
    """Whether `param` is set in `text`: its key (and value or list items, if given) are there."""
    return add(text, [param]) == text and any(key_of(t) == key_of(param) for t in tokens(text))


def missing(text: str, params: Sequence[str]) -> list[str]:
    """The parameters of `params` that `text` does not set."""
    return [p for p in params if not has(text, p)]
