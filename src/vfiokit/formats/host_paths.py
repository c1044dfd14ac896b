"""Paths below a root as the host sees them: `/etc/default/grub`, not `/tmp/tree/etc/default/grub`.
Pure: how every message names a host file, for the readers and the writer alike."""

from __future__ import annotations

import os


def shown_path(path: str, root: str | None) -> str:
    """`path` as the user thinks of it: below `root`, `/etc/...` (unchanged outside `root`)."""
    if root is None:
        return path
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return path
    return "/" if rel == os.curdir else "/" + rel
