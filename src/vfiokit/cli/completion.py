"""Values for shell completion (click's `_VFIOKIT_COMPLETE=bash_source vfiokit`).

Each callback reads what the command line typed so far names (the source options, `--root`) and
answers with what exists there: sample names, the addresses of the chosen source, the VMIDs of
this node, the boot parameters already configured. Completion must never print an error or a
traceback into the user's prompt, so anything vfiokit cannot read gives no values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from vfiokit.errors import VfiokitError

if TYPE_CHECKING:  # every command names a completer; only completing imports what they use
    from click.shell_completion import CompletionItem

Completer = Callable[[click.Context, click.Parameter, str], "list[CompletionItem]"]


def _guarded(f: Completer) -> Completer:
    def safe(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        try:
            return f(ctx, param, incomplete)
        except (VfiokitError, OSError, ValueError):
            return []

    safe.__doc__ = f.__doc__
    return safe


def _root(ctx: click.Context) -> str:
    return ctx.params.get("root") or "/"


@_guarded
def sample_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The bundled samples (`vfiokit samples`)."""
    from click.shell_completion import CompletionItem

    from vfiokit.sources import samples

    return [CompletionItem(n) for n in samples.names() if n.startswith(incomplete)]


@_guarded
def addresses(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The PCI addresses of the source the command line names so far (the live host by default),
    short (07:00.0) as `lspci` shows them, or with the domain when the user started typing one."""
    from click.shell_completion import CompletionItem

    from vfiokit.cli.common import load_source

    p = ctx.params
    top = load_source(p.get("root"), p.get("snapshot_file"), p.get("sample"), p.get("listing_file"))
    out = []
    for dev in top.devices:
        value = str(dev.address) if incomplete.count(":") == 2 or incomplete.startswith("0000") else \
            dev.address.short
        if value.startswith(incomplete):
            # No description: click 8.1's zsh script hands "value:description" to _describe
            # without escaping, and an address's own ':' would cut it there.
            out.append(CompletionItem(value))
    # The class words with a device in this source (analyses/device_query.py), after the addresses.
    from vfiokit.analyses.device_query import CLASS_WORDS

    out += [CompletionItem(w) for w, cw in CLASS_WORDS.items()
            if w.startswith(incomplete) and any(cw.matches(d) for d in top.devices)]
    return out


@_guarded
def vmids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The VMs of this node: one `/etc/pve/qemu-server/VMID.conf` each (pmxcfs shows the local
    node's VMs there)."""
    from pathlib import Path

    from click.shell_completion import CompletionItem

    folder = Path(_root(ctx)) / "etc/pve/qemu-server"
    ids = sorted((p.stem for p in folder.glob("*.conf") if p.stem.isdigit()), key=int)
    return [CompletionItem(v) for v in ids if v.startswith(incomplete)]


@_guarded
def boot_params(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The parameters the next boot's configuration already gives the kernel (what `boot remove`
    can take away), read as `vfiokit boot status` reads them."""
    from click.shell_completion import CompletionItem

    from vfiokit.formats.boot_setup import configured
    from vfiokit.formats.cmdline import tokens
    from vfiokit.sources.boot import read_boot

    line = configured(read_boot(_root(ctx)))
    if not line.known:
        return []
    return [CompletionItem(t) for t in dict.fromkeys(tokens(line.value)) if t.startswith(incomplete)]
