"""Writing a file the user named (a snapshot, a report): whole or not at all."""

from __future__ import annotations

import os
import tempfile

from vfiokit.errors import ExitCode, VfiokitError


def write_new_file(path: str, text: str) -> None:
    """Write `text` to `path` atomically: a temp file in the same folder, fsync, rename.

    A crash or a full disk leaves either the old file or the new one, never half of one.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    except OSError as e:
        raise VfiokitError(f"{path}: cannot write ({e.strerror})", ExitCode.WRITE_FAILED) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        os.unlink(tmp)
        raise VfiokitError(f"{path}: cannot write ({e.strerror})", ExitCode.WRITE_FAILED) from None
