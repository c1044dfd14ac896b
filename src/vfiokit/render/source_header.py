"""The one line that names where an output comes from when it is not this host.

A sample, a snapshot, a pasted listing or a captured tree printed like the live host would be
taken for this machine (issue 12: `vfiokit groups` fell back to the sample without saying so).
Text output starts with this line; `--json` carries the same words in `source`.
"""

from __future__ import annotations

from vfiokit.model import Topology

#: `Topology.source` of the machine vfiokit runs on (sources/sysfs.py `read_topology`).
LIVE = "live host"


def source_header(top: Topology) -> str | None:
    """`sample NAME (not this host)`, `snapshot FILE taken DATE on HOST`, `listing FILE`, ...;
    None for the live host, which needs no header."""
    if not top.source or top.source == LIVE:
        return None
    if top.source.startswith("sample "):
        # A bundled machine is never the one at hand, whatever it looks like.
        return f"{top.source} (not this host)"
    return top.source
