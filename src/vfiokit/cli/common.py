"""What every read command shares: the source options and the pci.ids handle."""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import click

from vfiokit.cli import completion
from vfiokit.errors import NoIommu

if TYPE_CHECKING:  # the model is imported by the command that loads one, not by --version or --help
    from vfiokit.model import PciAddress, Topology

_AGAIN = "vfiokit.source_again"
_ROOT = "vfiokit.source_root"


class SuggestingGroup(click.Group):
    """A command group that answers a mistyped command with the nearest ones ("did you mean")."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib  # here: only a mistyped command pays for it

            near = difflib.get_close_matches(name, self.list_commands(ctx), n=3, cutoff=0.5)
            said = f"; did you mean {' or '.join(near)}?" if near else ""
            raise click.UsageError(f"no command '{name}' in '{ctx.command_path}'{said}", ctx)
        return super().resolve_command(ctx, args)


def source_again() -> str:
    """The source option the user gave (`--sample X`), to repeat in a suggested command so that it
    reads the same machine; "" for the live host."""
    ctx = click.get_current_context(silent=True)
    return "" if ctx is None else str(ctx.meta.get(_AGAIN, ""))


def source_root() -> str | None:
    """The folder standing for / when the source is the live host or `--root`: the only sources
    whose boot configuration (modprobe.d, initramfs, command line) can be read; None otherwise."""
    ctx = click.get_current_context(silent=True)
    return None if ctx is None else ctx.meta.get(_ROOT)


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
        given = [(o, v) for o, v in (("--root", root), ("--snapshot", snapshot_file), ("--sample", sample),
                                     ("--listing", listing_file), ("--board", board)) if v is not None]
        ctx = click.get_current_context()
        ctx.meta[_AGAIN] = " ".join(f"{o} {shlex.quote(v)}" for o, v in given)
        ctx.meta[_ROOT] = (root or "/") if not given or given[0][0] == "--root" else None
        kwargs["source"] = functools.partial(load_source, root, snapshot_file, sample, listing_file, board)
        return f(*args, **kwargs)

    return wrapper


def load_source(root: str | None, snapshot_file: str | None, sample: str | None,
                listing_file: str | None = None, board: str | None = None, *,
                reset_methods: bool = True, drivers: bool = True, capabilities: bool = True) -> Topology:
    """The topology the chosen option names, through the one source registry (`sources.spec`);
    `reset_methods=False` when the command judges no reset, `drivers=False` when it shows and
    judges no driver, `capabilities=False` when it shows no PCIe type or ACS (see
    `spec.load_kind`)."""
    from vfiokit.sources import spec

    for kind, value in (("board", board), ("listing", listing_file), ("snapshot", snapshot_file),
                        ("sample", sample)):
        if value is not None:
            return spec.load_kind(kind, value)
    return spec.load_kind("root", root or "/", reset_methods=reset_methods, drivers=drivers,
                          capabilities=capabilities)


def with_target_resets(top: Topology, targets: Iterable[PciAddress]) -> Topology:
    """`top`, read with `reset_methods=False`, with the reset methods of `targets` when the source
    is the live host or --root (the only ones read without them): a command that judges the reset
    of a few devices reads their files, not one per function of the host."""
    root = source_root()
    if root is None:
        return top
    from vfiokit.sources.sysfs import with_reset_methods

    return with_reset_methods(top, root, targets)


def no_iommu(top: Topology) -> NoIommu:
    """The error for a source without IOMMU groups, with the reason `diagnose` finds (groups, report)."""
    from vfiokit.analyses.iommu_state import diagnose

    d = diagnose(top.host)
    return NoIommu(f"{top.source or 'this host'} has no IOMMU groups: {d.explanation}",
                   hint="to see what vfiokit shows, try 'vfiokit groups --sample asus-tuf-b550-plus'")
