"""Writing a file the user named (a snapshot, a report): whole or not at all, through the writer."""

from __future__ import annotations

import os

from vfiokit.edits.writer import FileChange, WritePlan, apply, read_if_present
from vfiokit.errors import ExitCode, VfiokitError


def write_new_file(path: str, text: str) -> None:
    """Write `text` to `path` with the safe writer's atomic steps (temp file in the same folder,
    fsync, rename), without backup: the user asked for this file to be (re)written.

    A crash or a full disk leaves either the old file or the new one, never half of one.
    """
    try:
        old = read_if_present(path)
    except IsADirectoryError:
        raise VfiokitError(f"{path}: is a folder", ExitCode.WRITE_FAILED) from None
    except OSError as e:
        raise VfiokitError(f"{path}: cannot write ({e.strerror})", ExitCode.WRITE_FAILED) from None
    apply(WritePlan((FileChange(os.path.abspath(path), old, text),), root=None, kind="output"))
