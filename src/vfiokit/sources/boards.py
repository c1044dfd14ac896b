"""Bundled boards: real IOMMU listings people published, shipped in `vfiokit/boards/NAME.txt`.

Each file is a provenance header (`formats.board_header`) over the listing as it was posted (only
the machine's output kept). `load(NAME)` reads one as a topology, like `--listing` would; the
source name says `board NAME` so messages name it.
"""

from __future__ import annotations

import os
from functools import cache

from vfiokit import package_data
from vfiokit.errors import BadInput
from vfiokit.formats.board_header import BoardHeader, parse
from vfiokit.model import Topology
from vfiokit.sources import listing

FOLDER = package_data.path("boards")


@cache
def _texts() -> dict[str, str]:
    # Read once per process: `vfiokit boards` summarises every file, and the corpus is ~200 KB.
    with os.scandir(FOLDER) as entries:
        return {e.name[:-4]: package_data.read_text("boards", e.name) for e in entries if e.name.endswith(".txt")}


def names() -> list[str]:
    return sorted(_texts())


def text(name: str) -> str:
    """The file's whole text (header and listing)."""
    found = _texts().get(name)
    if found is None:
        raise BadInput(f"no bundled board named '{name}' (vfiokit boards lists them; e.g. "
                       f"{', '.join(names()[:3])})")
    return found


def header(name: str) -> BoardHeader:
    return parse(text(name), f"board {name}")


def headers() -> list[BoardHeader]:
    return [header(n) for n in names()]


def read(name: str) -> listing.ListingRead:
    """The listing reader's full answer (devices, the line each came from, lines left out)."""
    return listing.parse_with_pciids(text(name), f"board {name}")


def load(name: str) -> Topology:
    return read(name).topology
