"""`GRUB_CMDLINE_LINUX_DEFAULT` in `/etc/default/grub` and its `grub.d/*.cfg` drop-ins. Pure.

`update-grub` (Debian's `grub-mkconfig`) sources `/etc/default/grub`, then every
`/etc/default/grub.d/*.cfg` in glob order, as shell: the last assignment wins. So the file that
decides the value is the one holding the last assignment, and that is the one vfiokit edits.

vfiokit only edits an assignment whose value it can read exactly as `sh` would: a single line at
the start of the line (`export` allowed), with a value that is double-quoted, single-quoted,
unquoted or empty, without `$`, backquotes or backslashes inside, followed by nothing or a
comment. Anything else (built from other variables, command substitution, spanning lines, set
inside an `if` or after `&&`) is refused with the file, line and reason: guessing there is how
boot lines get broken. Only the value's characters change; the rest of the file stays
byte-identical, and the quoting style is kept (an unquoted value gains double quotes only when
it needs them, that is when it gets a blank).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from vfiokit.errors import Refused

VAR = "GRUB_CMDLINE_LINUX_DEFAULT"

_UNQUOTED_BAD = set("$`\\\"';&|<>()")


class Setting(NamedTuple):
    """One assignment vfiokit can edit: where its value's text sits in the file."""

    path: str
    line: int
    #: `"`, `'` or "" (unquoted or empty).
    quote: str
    #: The value as sh sees it.
    value: str
    #: Character offsets of the value's text (quotes included) in the file.
    start: int
    end: int


class Unfollowable(NamedTuple):
    """An assignment (or unset) vfiokit cannot read safely."""

    path: str
    line: int
    reason: str
    #: For `VAR="$VAR more"` (a drop-in appending, as Ubuntu's kdump-tools and the Proxmox
    #: installer write them): " more", so the value can still be shown.
    appends: str | None = None


def _parse_value(path: str, n: int, line: str, pos: int, offset: int, var: str) -> Setting | Unfollowable:
    rest = line[pos:]
    if rest[:1] == '"':
        close = rest.find('"', 1)
        body = rest[1:close] if close >= 0 else rest[1:]
        m = re.fullmatch(rf"\$(?:{var}|\{{{var}\}})(\s[^$`\\]*)?", body)
        if m and close >= 0:
            return Unfollowable(path, n, f"{var} is built from other variables or commands",
                                m.group(1) or "")
        if "$" in body or "`" in body:
            return Unfollowable(path, n, f"{var} is built from other variables or commands")
        if "\\" in body:
            return Unfollowable(path, n, f"{var} uses backslash escapes")
        if close < 0:
            return Unfollowable(path, n, f"{var} spans several lines")
        quote, value, length = '"', body, close + 1
    elif rest[:1] == "'":
        close = rest.find("'", 1)
        if close < 0:
            return Unfollowable(path, n, f"{var} spans several lines")
        quote, value, length = "'", rest[1:close], close + 1
    else:
        m = re.match(r"[^\s]*", rest)
        word = m.group() if m else ""
        if "$" in word or "`" in word:
            return Unfollowable(path, n, f"{var} is built from other variables or commands")
        if set(word) & _UNQUOTED_BAD:
            return Unfollowable(path, n, f"{var}'s value joins quoted parts or shell operators")
        quote, value, length = "", word, len(word)
    after = rest[length:]
    if after and not after[0].isspace():
        return Unfollowable(path, n, f"{var}'s value joins several quoted parts")
    if after.strip() and not after.strip().startswith("#"):
        return Unfollowable(path, n, f"{var} is followed by a command on the same line")
    return Setting(path, n, quote, value, offset + pos, offset + pos + length)


def scan(path: str, text: str, var: str = VAR) -> list[Setting | Unfollowable]:
    """Every assignment of `var` in one file, in order."""
    found: list[Setting | Unfollowable] = []
    head = re.compile(rf"(?:export[ \t]+)?{var}=")
    anywhere = re.compile(rf"(?<![\w$]){var}=|\bunset\b[^#\n]*\b{var}\b")
    offset = 0
    for n, line in enumerate(text.splitlines(keepends=True), 1):
        body = line.rstrip("\r\n")
        if not body.lstrip().startswith("#"):
            m = head.match(body)
            if m:
                found.append(_parse_value(path, n, body, m.end(), offset, var))
            elif anywhere.search(body.split(" #")[0]):
                found.append(Unfollowable(path, n, f"{var} is set inside a command, block or condition"))
        offset += len(line)
    return found


def deciding(files: Sequence[tuple[str, str]], var: str = VAR) -> Setting | None:
    """The assignment that decides `var` after sourcing `files` in order (None: never set).
    Raises Refused when that last assignment is one vfiokit cannot read."""
    last: Setting | Unfollowable | None = None
    for path, text in files:
        items = scan(path, text, var)
        if items:
            last = items[-1]
    if isinstance(last, Unfollowable):
        raise Refused(f"{last.path}: line {last.line}: {last.reason}; vfiokit will not edit it",
                      hint="edit that line by hand, or make it a plain value such as "
                           f'{var}="quiet" and run vfiokit again')
    return last


def effective(files: Sequence[tuple[str, str]], var: str = VAR) -> tuple[str | None,
                                                                       Setting | Unfollowable | None]:
    """The value sh ends with (None: not knowable without running the files) and the last
    assignment. Plain values and `VAR="$VAR more"` appends are followed; nothing is executed."""
    value: str | None = ""
    last: Setting | Unfollowable | None = None
    for path, text in files:
        for item in scan(path, text, var):
            last = item
            if isinstance(item, Setting):
                value = item.value
            elif item.appends is not None and value is not None:
                value += item.appends
            else:
                value = None
    return value, last


def _quoted(quote: str, value: str) -> str:
    if quote == "" and (value == "" or not re.search(r"\s", value)):
        return value
    q = quote or '"'
    if q in value:
        raise Refused(f"cannot put {value!r} inside {q}-quotes")
    return f"{q}{value}{q}"


def set_value(text: str, setting: Setting, value: str) -> str:
    """`text` with the setting's value replaced by `value`, every other byte unchanged."""
    return text[: setting.start] + _quoted(setting.quote, value) + text[setting.end:]


def append_assignment(text: str, value: str, var: str = VAR) -> str:
    """`text` with a new `var="value"` line at its end (for a file that never sets `var`)."""
    sep = "" if text == "" or text.endswith("\n") else "\n"
    return f'{text}{sep}{var}="{value}"\n'
