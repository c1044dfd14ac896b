"""What every read command shares: the source options and the pci.ids handle."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from vfiokit.cli import completion
from vfiokit.model import Topology


def source_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --root / --snapshot / --sample / --listing / --board; the command receives `source` (a loader).

    The paths are not checked by click: a folder given for a file (or the reverse) is bad input
    that the loaders say in one line with exit 3, as for `compare snapshot:DIR`."""

    @click.option("--root", type=click.Path(), default=None,
                  help="Read the host from this folder instead of / (its sys/, proc/, etc/).")
    @click.option("--snapshot", "snapshot_file", type=click.Path(), default=None,
                  help="Read a snapshot file written by 'vfiokit snapshot'.")
    @click.option("--sample", default=None, shell_complete=completion.sample_names,
                  help="Read a bundled sample machine (see 'vfiokit samples').")
    @click.option("--listing", "listing_file", type=click.Path(allow_dash=True), default=None,
                  help="Read a pasted IOMMU group listing ('-' for standard input).")
    @click.option("--board", default=None, help="Read a bundled board's listing (see 'vfiokit boards').")
    @functools.wraps(f)
    def wrapper(*args: Any, root: str | None, snapshot_file: str | None, sample: str | None,
                listing_file: str | None, board: str | None, **kwargs: Any) -> Any:
        chosen = [o for o, v in (("--root", root), ("--snapshot", snapshot_file), ("--sample", sample),
                                 ("--listing", listing_file), ("--board", board)) if v is not None]
        if len(chosen) > 1:
            raise click.UsageError(f"choose one source: {' and '.join(chosen)} were both given")
        kwargs["source"] = functools.partial(load_source, root, snapshot_file, sample, listing_file, board)
        return f(*args, **kwargs)

    return wrapper


def load_source(root: str | None, snapshot_file: str | None, sample: str | None,
                listing_file: str | None = None, board: str | None = None) -> Topology:
    """The topology the chosen option names, through the one source registry (`sources.spec`)."""
    from vfiokit.sources import spec

    for kind, value in (("board", board), ("listing", listing_file), ("snapshot", snapshot_file),
                        ("sample", sample)):
        if value is not None:
            return spec.load_kind(kind, value)
    return spec.load_kind("root", root or "/")
