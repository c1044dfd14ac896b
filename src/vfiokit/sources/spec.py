"""Source specs: one word naming where a topology comes from, for commands that take two of them.

`live`, `root:DIR`, `snapshot:FILE`, `sample:NAME`, `board:NAME` (a bundled board's listing),
`listing:FILE` (`listing:-` is standard input), or a bare FILE: a vfiokit snapshot when its first
non-blank character opens a JSON object, else a pasted listing.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

from vfiokit.errors import BadInput
from vfiokit.model import Topology

#: The registry: each kind of source and the loader (module, function) that reads it. Modules are
#: imported on first use, so a command that reads a snapshot does not load the sysfs reader.
LOADERS: dict[str, tuple[str, str]] = {
    "root": ("vfiokit.sources.sysfs", "read_topology"),
    "snapshot": ("vfiokit.sources.snapshot", "load"),
    "sample": ("vfiokit.sources.samples", "load"),
    "board": ("vfiokit.sources.boards", "load"),
    "listing": ("vfiokit.sources.listing", "load"),
}
KINDS = ("live", *LOADERS)
#: The specs that read standard input (which can be read once).
STDIN = ("-", "listing:-")


def load_kind(kind: str, arg: str, *, reset_methods: bool = True, drivers: bool = True,
              capabilities: bool = True) -> Topology:
    """The topology of source `kind` (a key of `LOADERS`) read from `arg`: the one dispatcher
    behind both `compare`'s specs and the --root/--snapshot/--sample/--listing options.
    `reset_methods=False`, `drivers=False`, `capabilities=False`: the caller needs no reset
    methods, no drivers, no PCIe type or ACS, which the live reader then skips
    (`sysfs.read_topology`); the other sources hold them at no cost."""
    module, function = LOADERS[kind]
    loader: Callable[..., Topology] = getattr(importlib.import_module(module), function)
    if kind == "root" and not (reset_methods and drivers and capabilities):
        return loader(arg, reset_methods=reset_methods, drivers=drivers, capabilities=capabilities)
    return loader(arg)


def load(spec: str) -> Topology:
    """The topology `spec` names; BadInput (naming the spec) when it names nothing readable."""
    kind, sep, rest = spec.partition(":")
    if spec == "live":
        return load_kind("root", "/")
    if sep and kind in LOADERS:
        if not rest:
            raise BadInput(f"'{spec}': nothing after '{kind}:'")
        return load_kind(kind, rest)
    if spec == "-":
        return load_kind("listing", "-")
    if not os.path.isfile(spec):
        raise BadInput(f"'{spec}' is not a file, nor live, root:DIR, snapshot:FILE, sample:NAME, "
                       f"board:NAME or listing:FILE")
    return _load_file(spec)


def _load_file(path: str) -> Topology:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None
    return load_kind("snapshot" if head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"{" else "listing", path)
