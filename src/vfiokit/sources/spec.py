"""Source specs: one word naming where a topology comes from, for commands that take two of them.

`live`, `root:DIR`, `snapshot:FILE`, `sample:NAME`, `board:NAME` (a bundled board's listing),
`listing:FILE` (`listing:-` is standard input), or a bare FILE: a vfiokit snapshot when its first
non-blank character opens a JSON object, else a pasted listing.
"""

from __future__ import annotations

import os

from vfiokit.errors import BadInput
from vfiokit.model import Topology

KINDS = ("live", "root", "snapshot", "sample", "board", "listing")
#: The specs that read standard input (which can be read once).
STDIN = ("-", "listing:-")


def load(spec: str) -> Topology:
    """The topology `spec` names; BadInput (naming the spec) when it names nothing readable."""
    kind, sep, rest = spec.partition(":")
    if spec == "live":
        from vfiokit.sources import sysfs

        return sysfs.read_topology("/")
    if sep and kind in KINDS and kind != "live":
        if not rest:
            raise BadInput(f"'{spec}': nothing after '{kind}:'")
        if kind == "root":
            from vfiokit.sources import sysfs

            return sysfs.read_topology(rest)
        if kind == "snapshot":
            from vfiokit.sources import snapshot

            return snapshot.load(rest)
        if kind == "sample":
            from vfiokit.sources import samples

            return samples.load(rest)
        if kind == "board":
            from vfiokit.sources import boards

            return boards.load(rest)
        from vfiokit.sources import listing

        return listing.load(rest)
    if spec == "-":
        from vfiokit.sources import listing

        return listing.load("-")
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
    if head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"{":
        from vfiokit.sources import snapshot

        return snapshot.load(path)
    from vfiokit.sources import listing

    return listing.load(path)
