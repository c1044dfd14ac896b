"""Host files as the writer and the journal's readers find them, without writing anything: where
the backup folder and the journal live, the real file behind a path below a root (`resolve`), a
file's exact text (`read_if_present`), who may own vfiokit's private files (`owned`), and the error
an OS failure becomes (`fail`). `boot status` reads the journal with these alone; the atomic steps
that write (`edits/atomic.py`, tempfile, subprocess) stay out of a reading command.
"""

from __future__ import annotations

import os

from vfiokit import rootfs
from vfiokit.errors import ExitCode, Refused, VfiokitError

BACKUP_DIR = "var/backups/vfiokit"
JOURNAL = "journal.jsonl"


def fail(path: str, what: str, e: OSError) -> VfiokitError:
    code = ExitCode.PERMISSION if isinstance(e, PermissionError) else ExitCode.WRITE_FAILED
    return VfiokitError(f"{path}: cannot {what} ({e.strerror or e})", code)


def resolve(path: str, root: str | None) -> str:
    """The real file behind `path` (below `root`, which stands for `/`): every component is
    resolved with `rootfs.resolve_under`, so the real file is what gets replaced and the link
    stays. A path, or a link on the way, that leads outside `root` is refused (exit REFUSED),
    named as the host sees it; a loop is bad input (exit 3)."""
    base = os.path.abspath(root) if root else "/"
    try:
        return rootfs.resolve_under(base, rootfs.host_path(base, path))
    except rootfs.OutsideRoot as e:
        raise Refused(f"{e}; nothing written") from None


def read_if_present(path: str) -> str | None:
    """A file's text exactly (bytes that are not UTF-8 survive a read and write unchanged);
    None when it does not exist. Only a regular file is read (`rootfs.read_file`)."""
    return rootfs.read_text(path, follow=True)


def owned(st: os.stat_result) -> bool:
    """Owned by root (or by whoever runs vfiokit, for a tree of one's own): anyone else could
    have planted it, and a planted journal or backup is a way to make root write any file."""
    return st.st_uid in (0, os.geteuid())
