"""modprobe.d configuration (kmod's modprobe.d(5)) and the `ids=` list of vfio-pci. Pure: no I/O.

The file vfiokit owns is `/etc/modprobe.d/vfiokit.conf`; it holds at most one
`options vfio-pci ids=...` line and one `softdep DRIVER pre: vfio-pci` line per driver that would
otherwise claim the device first. Edits keep every other line byte for byte (a user's comment or
option stays where it is), and the real kmod (`modprobe --showconfig -C DIR`) reads the result.

Syntax followed (kmod `libkmod/libkmod-config.c` `kmod_config_parse`): one command per line,
`#` starts a comment line, a trailing backslash continues the line, and `-` and `_` are the same
in a module name (`underscores()`), so `vfio-pci` and `vfio_pci` are one module.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from vfiokit.errors import BadInput

#: The file vfiokit writes and removes (its own: no other tool writes it).
VFIOKIT_CONF = "/etc/modprobe.d/vfiokit.conf"
HEADER = ("# Written by vfiokit bind --persistent: devices handed to vfio-pci at boot.\n"
          "# 'vfiokit unbind --persistent' removes what it added.\n")

#: One id of vfio-pci's `ids=` list. The kernel (drivers/vfio/pci/vfio_pci.c, `vfio_pci_fill_ids`)
#: reads each comma-separated entry with sscanf "%x:%x:%x:%x:%x:%x"
#: (vendor:device[:subvendor[:subdevice[:class[:class_mask]]]]); vfiokit writes and accepts the
#: ids a user can check against `lspci -nn`: vendor:device with an optional subsystem pair.
ID_RE = re.compile(r"([0-9a-f]{4}):([0-9a-f]{4})(?::([0-9a-f]{4}):([0-9a-f]{4}))?")


def module_key(name: str) -> str:
    """kmod's `underscores()`: `vfio-pci` and `vfio_pci` name the same module."""
    return name.replace("-", "_")


def parse_ids(value: str, where: str = "vfio-pci.ids") -> list[str]:
    """The ids of an `ids=` value, lower case, in order, without repeats; one bad entry is bad
    input naming it (the kernel would log 'incomplete PCI id' or silently match nothing)."""
    out: list[str] = []
    for entry in value.split(","):
        e = entry.strip().lower()
        if not ID_RE.fullmatch(e):
            raise BadInput(f"{where}: '{entry}' is not a PCI id (vvvv:dddd or vvvv:dddd:ssss:ssss, "
                           "hexadecimal, as 'lspci -nn' shows them)")
        if e not in out:
            out.append(e)
    return out


class Command(NamedTuple):
    """One logical line of a modprobe.d file (continuations joined)."""

    #: 1-based number of its first physical line.
    line: int
    #: "options", "softdep", "blacklist", "install", "alias", ...
    verb: str
    module: str
    args: tuple[str, ...]


def _logical(text: str) -> list[tuple[int, int, str]]:
    """(first line index, last line index, joined text) of each logical line (0-based)."""
    lines = text.split("\n")
    out: list[tuple[int, int, str]] = []
    i = 0
    while i < len(lines):
        start, buf = i, lines[i]
        while buf.endswith("\\") and i + 1 < len(lines):
            i += 1
            buf = buf[:-1] + " " + lines[i]
        out.append((start, i, buf))
        i += 1
    return out


def commands(text: str) -> list[Command]:
    """Every command of a modprobe.d file, comments and blank lines left out."""
    out = []
    for start, _end, buf in _logical(text):
        words = buf.split()
        if not words or words[0].startswith("#") or len(words) < 2:
            continue
        out.append(Command(start + 1, words[0], words[1], tuple(words[2:])))
    return out


def vfio_ids_lines(text: str) -> list[tuple[int, list[str]]]:
    """Every `ids=` an `options vfio-pci` line gives in this file, in order, with the number of
    the line it starts on (ids lower case, as written: `parse_ids` judges them)."""
    return [(c.line, [i.strip().lower() for i in a[4:].split(",") if i.strip()])
            for c in commands(text) if c.verb == "options" and module_key(c.module) == "vfio_pci"
            for a in c.args if a.startswith("ids=")]


def vfio_ids(text: str) -> list[str]:
    """The ids `options vfio-pci ids=` gives in this file (kmod keeps every options line; the
    module sees them all, and vfio-pci reads the last `ids=` it is given)."""
    found = vfio_ids_lines(text)
    return found[-1][1] if found else []


def softdeps(text: str) -> list[str]:
    """Drivers that have a `softdep DRIVER pre: ... vfio-pci ...` here: vfio-pci is loaded before
    them (modprobe.d(5) softdep), so it claims the listed ids first."""
    out = []
    for c in commands(text):
        if c.verb == "softdep" and "pre:" in c.args:
            pre = c.args[c.args.index("pre:") + 1:]
            pre = pre[:pre.index("post:")] if "post:" in pre else pre
            if any(module_key(m) == "vfio_pci" for m in pre) and c.module not in out:
                out.append(c.module)
    return out


def _ids_line(ids: list[str]) -> str:
    return f"options vfio-pci ids={','.join(ids)}"


def _softdep_line(driver: str) -> str:
    return f"softdep {driver} pre: vfio-pci"


def with_binding(text: str | None, ids: list[str], drivers: list[str]) -> str:
    """vfiokit.conf with `ids` added to its ids= line and a softdep for each of `drivers`; other
    lines keep their bytes. `text` None: the file does not exist yet."""
    text = text if text is not None else HEADER
    have = vfio_ids(text)
    merged = have + [i for i in ids if i not in have]
    lines = text.split("\n")
    trailing = lines[-1] == ""
    body = lines[:-1] if trailing else lines
    if merged != have or not have:
        found = False
        for start, end, buf in reversed(_logical("\n".join(body))):
            w = buf.split()
            if len(w) >= 2 and w[0] == "options" and module_key(w[1]) == "vfio_pci" and any(
                    a.startswith("ids=") for a in w[2:]):
                body[start:end + 1] = [_ids_line(merged)]
                found = True
                break
        if not found and merged:
            body.append(_ids_line(merged))
    have_deps = [module_key(d) for d in softdeps(text)]
    body += [_softdep_line(d) for d in drivers if module_key(d) not in have_deps]
    return "\n".join(body) + "\n"


def without_binding(text: str, ids: list[str], drivers: list[str]) -> str | None:
    """vfiokit.conf with `ids` and the softdeps of `drivers` taken out; None when nothing but the
    header is left (the file is removed, as bind found it)."""
    keep_ids = [i for i in vfio_ids(text) if i not in ids]
    gone = {module_key(d) for d in drivers}
    out: list[str] = []
    lines = text.rstrip("\n").split("\n")
    for start, end, buf in _logical(text.rstrip("\n")):
        w = buf.split()
        if len(w) >= 2 and w[0] == "options" and module_key(w[1]) == "vfio_pci" and any(
                a.startswith("ids=") for a in w[2:]):
            if keep_ids:
                out.append(_ids_line(keep_ids))
            continue
        if len(w) >= 2 and w[0] == "softdep" and module_key(w[1]) in gone and \
                [module_key(a) for a in w[2:]] == ["pre:", "vfio_pci"]:
            continue
        out += lines[start:end + 1]
    new = "\n".join(out) + "\n"
    return None if new in (HEADER, "\n") else new
