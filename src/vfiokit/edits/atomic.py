"""The writer's atomic steps on one file, and the backup folder they keep private.

`replace_file` makes a path hold a text (temp file in the same folder, owner, mode and extended
attributes kept, fsync, rename, fsync of the folder); `backup_folder` and `open_private` refuse a
backup folder, journal or lock that someone else could have planted (finding the real file below a
root, `resolve`, is `edits/host_files.py`'s, which reading commands use without these steps).
`edits/writer.py` composes them into `apply`; nothing else writes a file.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import glob
import os
import stat
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from vfiokit.edits.host_files import BACKUP_DIR, fail, owned
from vfiokit.errors import ExitCode, Refused, VfiokitError, child_env

TMP_SUFFIX = ".vfiokit-tmp"
#: Seconds a refresh command may run. update-grub on a host with many kernels takes tens of
#: seconds; one that hangs (a stuck ESP mount) must not hold the lock, and the change, for ever.
COMMAND_TIMEOUT = 600.0

#: Called with (temporary file, target) after the temporary file is complete and before the
#: rename: tests use it to simulate a crash or a kill at the worst moment.
BeforeRename = Callable[[str, str], None]
#: Runs one command; returns (exit code, last line of its error output). Tests may replace it.
Runner = Callable[[Sequence[str]], tuple[int, str]]


@dataclass
class Hooks:
    before_rename: BeforeRename | None = None
    runner: Runner | None = None
    #: Seconds each command may run (tests shorten it).
    timeout: float = COMMAND_TIMEOUT
    #: Clock for backup names and the journal (tests pin it).
    now: Callable[[], datetime.datetime] = field(
        default=lambda: datetime.datetime.now(datetime.UTC))


def fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: str, text: str | None, mode: int, hooks: Hooks) -> None:
    """Atomically make `path` hold `text` (None: remove it), keeping owner and mode."""
    folder = os.path.dirname(path) or "."
    if text is None:
        try:
            os.unlink(path)
            fsync_dir(folder)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise fail(path, "remove", e) from None
        return
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise fail(path, "read", e) from None
    if st is not None and not st.st_mode & 0o200:
        # Root can write anything; a file without its owner's write bit was made read-only on
        # purpose (chmod a-w), and vfiokit does not override that.
        raise VfiokitError(f"{path}: is read-only (mode {st.st_mode & 0o7777:04o}); not changed",
                           ExitCode.WRITE_FAILED)
    if st is not None and st.st_nlink > 1:
        # Replacing by rename gives this name a new inode: the other names would keep the old text.
        raise Refused(f"{path}: has {st.st_nlink} hard links; a rewrite would leave the other names "
                      "with the old text, so vfiokit leaves it alone",
                      hint="edit it by hand, or make it a single file (cp then mv) first")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=TMP_SUFFIX, dir=folder)
    except OSError as e:
        raise fail(path, "write", e) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
            f.write(text)
            f.flush()
            if st is not None:
                if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                    os.fchown(f.fileno(), st.st_uid, st.st_gid)
                _copy_xattrs(path, f.fileno())
                os.fchmod(f.fileno(), st.st_mode & 0o7777)
            else:
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        if hooks.before_rename is not None:
            hooks.before_rename(tmp, path)
        os.replace(tmp, path)
        fsync_dir(folder)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise fail(path, "write", e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _copy_xattrs(src: str, fd: int) -> None:
    """Give the new file the old one's extended attributes: POSIX ACLs (`system.posix_acl_access`)
    and security labels (`security.selinux`) live there, and a fresh temp file has none."""
    try:
        names = os.listxattr(src)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.ENODATA):
            return
        raise
    for name in names:
        try:
            os.setxattr(fd, name, os.getxattr(src, name))
        except OSError as e:
            raise VfiokitError(f"{src}: cannot keep its extended attribute {name} ({e.strerror}); not changed",
                               ExitCode.WRITE_FAILED) from None


def clean_stale_temps(path: str) -> None:
    """Remove temporary files a killed vfiokit left next to `path` (we hold the lock)."""
    pattern = os.path.join(glob.escape(os.path.dirname(path) or "."),
                           f".{glob.escape(os.path.basename(path))}.*{TMP_SUFFIX}")
    for stale in glob.glob(pattern, include_hidden=True):
        with contextlib.suppress(OSError):
            os.unlink(stale)


def backup_folder(root: str) -> str:
    """`<root>/var/backups/vfiokit`, created 0700 whatever the umask, refused when it is a symlink
    or not ours; an existing folder with wider modes is narrowed."""
    folder = os.path.join(root, BACKUP_DIR)
    try:
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
        st = os.lstat(folder)
    except OSError as e:
        raise fail(folder, "create the backup folder", e) from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or not owned(st):
        why = "is a symlink" if stat.S_ISLNK(st.st_mode) else (
            "is not a folder" if not stat.S_ISDIR(st.st_mode) else f"is owned by uid {st.st_uid}")
        raise Refused(f"{folder}: {why}; vfiokit keeps backups and its journal only in a real folder "
                      "owned by root", hint="move it away and run the command again")
    if st.st_mode & 0o7777 != 0o700:
        try:
            os.chmod(folder, 0o700)
        except OSError as e:
            raise fail(folder, "make the backup folder private", e) from None
    return folder


def open_private(path: str, flags: int) -> int:
    """Open a file of the backup folder (journal, lock) without following a symlink, mode 0600."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Refused(f"{path}: is a symlink; vfiokit does not follow one in its backup folder",
                          hint="move it away and run the command again") from None
        raise fail(path, "open", e) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or not owned(st):
        os.close(fd)
        raise Refused(f"{path}: is not a regular file owned by root; not used",
                      hint="move it away and run the command again")
    if st.st_mode & 0o7777 != 0o600:
        os.fchmod(fd, 0o600)
    return fd


def run_argv(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> tuple[int, str]:
    try:
        p = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=timeout,
                           env=child_env())
    except FileNotFoundError:
        return 127, "command not found"
    except subprocess.TimeoutExpired:
        # subprocess.run kills the child; the caller then rolls back and releases the lock.
        return 124, f"no answer after {timeout:g} s, stopped"
    except OSError as e:
        return 126, e.strerror or str(e)
    lines = [ln.strip() for ln in (p.stderr or p.stdout or "").splitlines() if ln.strip()]
    return p.returncode, lines[-1] if lines else ""


def run_command(argv: Sequence[str], hooks: Hooks) -> tuple[int, str]:
    return hooks.runner(argv) if hooks.runner is not None else run_argv(argv, hooks.timeout)


def private_dirs(base: str, rel: str) -> None:
    """Create the folders of `rel` below `base` (the backup folder), 0700 whatever the umask."""
    path = base
    for part in [p for p in rel.split("/") if p]:
        path = os.path.join(path, part)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        if os.path.islink(path) or not os.path.isdir(path):
            raise Refused(f"{path}: is not a folder; vfiokit does not follow a symlink in its backup folder")
        os.chmod(path, 0o700)
