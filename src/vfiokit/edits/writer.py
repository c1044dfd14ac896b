"""The one safe writer: every file vfiokit changes on a host goes through `apply(plan)`.

A `WritePlan` is built in memory first (the new text of each file, the commands to run after, notes
such as "reboot needed"), shown as a unified diff, and only then applied. `apply`:

1. takes an exclusive `fcntl.flock` on `<root>/var/backups/vfiokit/.lock`, so two vfiokit runs
   never interleave, and re-reads each file: if it changed since the plan was made, it stops
   (exit CONFLICT) instead of overwriting someone else's edit;
2. resolves every path component (with `root` standing for `/`, `rootfs.resolve_under`),
   refuses a path that leads outside `root`, and writes the real file, not the link;
3. writes a temporary file in the same folder (so the rename cannot cross file systems), named
   `.<name>.<random>.vfiokit-tmp`: a leftover after a crash is a dot file with a suffix that no
   `*.cfg` / `*.conf` glob (GRUB's `grub.d`, `modprobe.d`) ever picks up;
4. gives it the old file's owner, mode and extended attributes (ACLs, security labels), fsyncs
   it, keeps a timestamped backup of the old content, renames it over the target (atomic on
   POSIX) and fsyncs the folder; a hard-linked target is refused (a rename would split the
   names: the others would keep the old text);
5. runs the plan's commands (`update-grub`, `proxmox-boot-tool refresh`, ...) with a timeout;
   if one fails or hangs, every file of the plan is put back (through the same atomic steps) and
   the error is reported as one line (exit WRITE_FAILED).

The journal is written ahead: the entry (paths, backups, hashes, commands) is appended with state
"intent" BEFORE the first rename, and a line marking it "done" (or "rolled-back") after. A run
killed in between leaves an "intent" entry; the next `apply` (any writing command) finishes it
before doing anything else: files all new -> run the commands again and mark it done; files all
old -> mark it rolled back; some new, some old -> put the new ones back from their backups.
`interrupted(root)` says what such an entry left, for `boot status`.

Nothing is written, backed up or run when no file's text changes.

Backups and the journal live below the root the plan was made for:
`<root>/var/backups/vfiokit/<path>.<UTC timestamp>` holds a previous content, and
`<root>/var/backups/vfiokit/journal.jsonl` has one JSON line per applied plan (time, kind, files
with their backup, the SHA-256 of what was written, the commands) and one short line per change
of state (`{"id": ..., "state": "done" | "rolled-back" | "skipped"}`). `undo_plan(root, kind)`
turns the last entry not yet undone back into a plan (itself applied through `apply`, so an undo
is shown as a diff and journaled); undoing again goes one change further back, as a stack. An
entry whose files already hold their backups is passed over and marked "skipped".

The journal is not trusted blindly: the backup folder (0700), the journal (0600) and the lock are
refused when they are symlinks or owned by another user than root (or the user running vfiokit),
and an entry is used by `undo` only if its backup is the one `apply` names inside the backup
folder, its path is a file that its kind of change writes (`UNDOABLE`) and its commands are known
refresh commands (`REFRESH_COMMANDS`). A torn last line (a write cut short) is skipped with a note.

A plan with `root=None` (a file the user named on the command line, such as a snapshot) is
written with the same atomic steps but without backup or journal.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import fnmatch
import glob
import hashlib
import json
import os
import re
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from vfiokit import rootfs
from vfiokit.errors import BadInput, Conflict, ExitCode, Refused, VfiokitError, child_env
from vfiokit.formats.diff import unified_diff

BACKUP_DIR = "var/backups/vfiokit"
JOURNAL = "journal.jsonl"
TMP_SUFFIX = ".vfiokit-tmp"
#: Seconds a refresh command may run. update-grub on a host with many kernels takes tens of
#: seconds; one that hangs (a stuck ESP mount) must not hold the lock, and the change, for ever.
COMMAND_TIMEOUT = 600.0
#: The commands a journal entry may make `undo` run (the refresh commands `sources/boot.py` plans).
REFRESH_COMMANDS = (("update-grub",), ("proxmox-boot-tool", "refresh"), ("pve-efiboot-tool", "refresh"))
#: The files each kind of journaled change writes, as the host sees them (`*` stays inside one
#: folder): `undo` restores nothing else, whatever a hand-edited journal says.
UNDOABLE = {"boot": ("/etc/default/grub", "/etc/default/grub.d/*.cfg", "/etc/kernel/cmdline")}
#: A journal id, which is also the suffix of every backup that entry names.
_STAMP = re.compile(r"\d{8}T\d{6}\.\d{6}Z")
#: States a journal entry goes through; an entry of an older vfiokit (no state) is "done".
_STATES = ("intent", "done", "rolled-back", "skipped")

#: Called with (temporary file, target) after the temporary file is complete and before the
#: rename: tests use it to simulate a crash or a kill at the worst moment.
BeforeRename = Callable[[str, str], None]
#: Runs one command; returns (exit code, last line of its error output). Tests may replace it.
Runner = Callable[[Sequence[str]], tuple[int, str]]


@dataclass(frozen=True)
class FileChange:
    """One file's change: `path` on disk, its current text (None: absent) and the wanted text
    (None: delete it)."""

    path: str
    old_text: str | None
    new_text: str | None
    #: Mode of a file that does not exist yet.
    mode: int = 0o644

    @property
    def changes(self) -> bool:
        return self.old_text != self.new_text


@dataclass(frozen=True)
class WritePlan:
    """What an edit will do, complete before anything is touched."""

    changes: tuple[FileChange, ...]
    #: Commands run after the files are written, in order (each an argv).
    commands: tuple[tuple[str, ...], ...] = ()
    #: What the user must know: "reboot to apply", warnings.
    notes: tuple[str, ...] = ()
    #: The folder standing for `/` (backups and journal go below it); None: no backup.
    root: str | None = "/"
    #: What kind of edit this is, for the journal and `undo_plan(kind=...)`: "boot", ...
    kind: str = "edit"
    #: Set on a plan made by `undo_plan`: the journal entry it undoes...
    undoes: str | None = None
    #: ...and the newer ones it passed over because their files already held their backups.
    skips: tuple[str, ...] = ()

    @property
    def effective(self) -> tuple[FileChange, ...]:
        return tuple(c for c in self.changes if c.changes)

    @property
    def empty(self) -> bool:
        return not self.effective

    def shown_path(self, path: str) -> str:
        return shown_path(path, self.root)

    def diff(self) -> str:
        """Unified diff of every file that changes (bytes that are not UTF-8 shown as U+FFFD)."""
        def shown(text: str | None) -> str:
            return (text or "").encode("utf-8", "surrogateescape").decode("utf-8", "replace")

        out: list[str] = []
        for c in self.effective:
            name = self.shown_path(c.path)
            out.append(unified_diff(shown(c.old_text), shown(c.new_text),
                                    name if c.old_text is not None else "/dev/null",
                                    name if c.new_text is not None else "/dev/null"))
        return "".join(out)


@dataclass(frozen=True)
class Applied:
    """What `apply` did."""

    files: tuple[str, ...]
    commands: tuple[tuple[str, ...], ...]
    backups: tuple[str, ...] = ()
    journal_id: str | None = None
    #: What the user must know besides: an interrupted change finished, a journal line not written.
    notes: tuple[str, ...] = ()


@dataclass
class Hooks:
    before_rename: BeforeRename | None = None
    runner: Runner | None = None
    #: Seconds each command may run (tests shorten it).
    timeout: float = COMMAND_TIMEOUT
    #: Clock for backup names and the journal (tests pin it).
    now: Callable[[], datetime.datetime] = field(
        default=lambda: datetime.datetime.now(datetime.UTC))


def _fail(path: str, what: str, e: OSError) -> VfiokitError:
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


def shown_path(path: str, root: str | None) -> str:
    """`path` as the user thinks of it: below `root`, `/etc/...` (unchanged outside `root`)."""
    if root is None:
        return path
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return path
    return "/" if rel == os.curdir else "/" + rel


def read_if_present(path: str) -> str | None:
    """A file's text exactly (bytes that are not UTF-8 survive a read and write unchanged);
    None when it does not exist. Only a regular file is read (`rootfs.read_file`)."""
    return rootfs.read_text(path, follow=True)


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(path: str, text: str | None, mode: int, hooks: Hooks) -> None:
    """Atomically make `path` hold `text` (None: remove it), keeping owner and mode."""
    folder = os.path.dirname(path) or "."
    if text is None:
        try:
            os.unlink(path)
            _fsync_dir(folder)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise _fail(path, "remove", e) from None
        return
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise _fail(path, "read", e) from None
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
        raise _fail(path, "write", e) from None
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
        _fsync_dir(folder)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _fail(path, "write", e) from None
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


def _clean_stale_temps(path: str) -> None:
    """Remove temporary files a killed vfiokit left next to `path` (we hold the lock)."""
    pattern = os.path.join(glob.escape(os.path.dirname(path) or "."),
                           f".{glob.escape(os.path.basename(path))}.*{TMP_SUFFIX}")
    for stale in glob.glob(pattern, include_hidden=True):
        with contextlib.suppress(OSError):
            os.unlink(stale)


def _owned(st: os.stat_result) -> bool:
    """Owned by root (or by whoever runs vfiokit, for a tree of one's own): anyone else could
    have planted it, and a planted journal or backup is a way to make root write any file."""
    return st.st_uid in (0, os.geteuid())


def _backup_folder(root: str) -> str:
    """`<root>/var/backups/vfiokit`, created 0700 whatever the umask, refused when it is a symlink
    or not ours; an existing folder with wider modes is narrowed."""
    folder = os.path.join(root, BACKUP_DIR)
    try:
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
        st = os.lstat(folder)
    except OSError as e:
        raise _fail(folder, "create the backup folder", e) from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or not _owned(st):
        why = "is a symlink" if stat.S_ISLNK(st.st_mode) else (
            "is not a folder" if not stat.S_ISDIR(st.st_mode) else f"is owned by uid {st.st_uid}")
        raise Refused(f"{folder}: {why}; vfiokit keeps backups and its journal only in a real folder "
                      "owned by root", hint="move it away and run the command again")
    if st.st_mode & 0o7777 != 0o700:
        try:
            os.chmod(folder, 0o700)
        except OSError as e:
            raise _fail(folder, "make the backup folder private", e) from None
    return folder


def _open_private(path: str, flags: int) -> int:
    """Open a file of the backup folder (journal, lock) without following a symlink, mode 0600."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Refused(f"{path}: is a symlink; vfiokit does not follow one in its backup folder",
                          hint="move it away and run the command again") from None
        raise _fail(path, "open", e) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or not _owned(st):
        os.close(fd)
        raise Refused(f"{path}: is not a regular file owned by root; not used",
                      hint="move it away and run the command again")
    if st.st_mode & 0o7777 != 0o600:
        os.fchmod(fd, 0o600)
    return fd


@contextlib.contextmanager
def _locked(root: str | None) -> Iterator[None]:
    if root is None:
        yield
        return
    fd = _open_private(os.path.join(_backup_folder(root), ".lock"), os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict("another vfiokit is changing this host right now; try again when it is done") from None
        yield
    finally:
        os.close(fd)


def _run(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> tuple[int, str]:
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


def _command(argv: Sequence[str], hooks: Hooks) -> tuple[int, str]:
    return hooks.runner(argv) if hooks.runner is not None else _run(argv, hooks.timeout)


def _private_dirs(base: str, rel: str) -> None:
    """Create the folders of `rel` below `base` (the backup folder), 0700 whatever the umask."""
    path = base
    for part in [p for p in rel.split("/") if p]:
        path = os.path.join(path, part)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        if os.path.islink(path) or not os.path.isdir(path):
            raise Refused(f"{path}: is not a folder; vfiokit does not follow a symlink in its backup folder")
        os.chmod(path, 0o700)


def _backup(plan: WritePlan, change: FileChange, stamp: str) -> str | None:
    """Save the previous content; return the backup's path relative to the backup folder."""
    if change.old_text is None or plan.root is None:
        return None
    rel = plan.shown_path(change.path).lstrip("/")
    name = f"{rel}.{stamp}"
    folder = os.path.join(plan.root, BACKUP_DIR)
    dest = os.path.join(folder, name)
    try:
        _private_dirs(folder, os.path.dirname(name))
    except OSError as e:
        raise _fail(dest, "create the backup folder", e) from None
    # Only root reads backups: the files saved may hold what their owner kept private.
    _replace(dest, change.old_text, 0o600, Hooks())
    return name


def _clean_backup_temps(root: str) -> None:
    """Remove temporary files a killed vfiokit left while writing a backup (we hold the lock)."""
    folder = os.path.join(root, BACKUP_DIR)
    for here, _dirs, names in os.walk(folder):
        for name in names:
            if name.startswith(".") and name.endswith(TMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(here, name))


def _sha(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _journal(root: str, record: dict) -> None:
    """Append one line to the journal and fsync it. A line cut short by an earlier failure (disk
    full, a kill mid-write) is cut off first, so every line stays whole."""
    path = os.path.join(root, BACKUP_DIR, JOURNAL)
    fd = _open_private(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size:
            data = os.pread(fd, size, 0)
            if not data.endswith(b"\n"):
                os.ftruncate(fd, data.rfind(b"\n") + 1)
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        os.lseek(fd, 0, os.SEEK_END)
        written = 0
        while written < len(line):
            written += os.write(fd, line[written:])
        os.fsync(fd)
    except OSError as e:
        raise _fail(path, "write the journal", e) from None
    finally:
        os.close(fd)


def _unlink_backups(root: str, backups: Sequence[str | None]) -> None:
    for b in backups:
        if b:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(root, BACKUP_DIR, b))


def apply(plan: WritePlan, hooks: Hooks | None = None) -> Applied:
    """Apply `plan` (see the module text for the steps). Raises VfiokitError; on any failure the
    files are as they were, and the message says so (or says exactly what is not)."""
    hooks = hooks or Hooks()
    todo = plan.effective
    if not todo:
        return Applied((), ())
    with _locked(plan.root):
        notes = _finish_interrupted(plan.root, hooks) if plan.root is not None else []
        reals = [resolve(c.path, plan.root) for c in todo]
        for c, real in zip(todo, reals, strict=True):
            try:
                now_text = read_if_present(real)
            except OSError as e:
                raise _fail(c.path, "read", e) from None
            if now_text != c.old_text:
                raise Conflict(f"{plan.shown_path(c.path)} changed since vfiokit read it; nothing "
                               "was written, run the command again")
            if plan.root is not None:
                _clean_stale_temps(real)
        if plan.root is not None:
            _clean_backup_temps(plan.root)
        at = hooks.now()
        stamp = at.strftime("%Y%m%dT%H%M%S.%fZ")
        backups: list[str | None] = []
        journal_id = None
        if plan.root is not None:
            try:
                for c in todo:
                    backups.append(_backup(plan, c, stamp))
                # Written ahead: a kill after this line leaves an entry the next run finishes.
                _journal(plan.root, {
                    "id": stamp, "at": at.isoformat(timespec="seconds"), "kind": plan.kind,
                    "undoes": plan.undoes, "commands": [list(a) for a in plan.commands], "state": "intent",
                    "files": [{"path": plan.shown_path(c.path), "backup": b, "existed": c.old_text is not None,
                               "mode": c.mode, "written_sha256": _sha(c.new_text)}
                              for c, b in zip(todo, backups, strict=True)],
                })
            except BaseException as e:
                _unlink_backups(plan.root, backups)
                if isinstance(e, VfiokitError):
                    e.args = (f"{e}; nothing was changed",)
                raise
            journal_id = stamp
        done: list[tuple[FileChange, str]] = []
        try:
            for c, real in zip(todo, reals, strict=True):
                _replace(real, c.new_text, c.mode, hooks)
                done.append((c, real))
            for argv in plan.commands:
                code, why = _command(argv, hooks)
                if code != 0:
                    raise VfiokitError(f"{' '.join(argv)} failed (exit {code}{': ' + why if why else ''})",
                                       ExitCode.WRITE_FAILED)
        except BaseException as e:
            restored = _restore(done, plan)
            if plan.root is not None and "NOT" not in restored:
                try:
                    _journal(plan.root, {"id": stamp, "state": "rolled-back"})
                except VfiokitError:
                    restored += " (the journal still calls it interrupted; the next run marks it rolled back)"
            if isinstance(e, VfiokitError) and done:
                e.args = (f"{e}; {restored}",)
            raise
        if plan.root is not None:
            try:
                for skipped in plan.skips:
                    _journal(plan.root, {"id": skipped, "state": "skipped"})
                _journal(plan.root, {"id": stamp, "state": "done"})
            except VfiokitError as e:
                notes.append(f"the change is made ({', '.join(plan.shown_path(c.path) for c in todo)}"
                             f"{', ran ' + ', '.join(' '.join(a) for a in plan.commands) if plan.commands else ''})"
                             f" but its journal entry could not be marked done: {e}; the next vfiokit run "
                             "marks it, and undo already sees it")
        return Applied(tuple(plan.shown_path(c.path) for c in todo), plan.commands,
                       tuple(b for b in backups if b), journal_id, tuple(notes))


def _restore(done: list[tuple[FileChange, str]], plan: WritePlan) -> str:
    """Put back every file already written; say what happened, in words."""
    failed = []
    for c, real in reversed(done):
        try:
            _replace(real, c.old_text, c.mode, Hooks())
        except VfiokitError:
            failed.append(plan.shown_path(c.path))
    names = ", ".join(plan.shown_path(c.path) for c, _ in done)
    if failed:
        return f"could NOT restore {', '.join(failed)} (backup in {os.path.join('/', BACKUP_DIR)})"
    return f"{names} restored"


@dataclass(frozen=True)
class Journal:
    """The journal's entries, oldest first, each with its latest `state`; `notes` say what was
    skipped (a torn last line)."""

    entries: tuple[dict, ...]
    notes: tuple[str, ...] = ()


def load_journal(root: str) -> Journal:
    path = os.path.join(root, BACKUP_DIR, JOURNAL)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return Journal(())
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Refused(f"{path}: is a symlink; vfiokit does not follow one in its backup folder") from None
        raise _fail(path, "read", e) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or not _owned(st):
        os.close(fd)
        raise Refused(f"{path}: is not a regular file owned by root; not used")
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    entries: dict[str, dict] = {}
    notes = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):  # ValueError: also a number of 4,300+ digits
            if n == len(lines):  # no newline after it: a write cut short (disk full, a kill)
                notes.append(f"{path}: line {n} is cut short (a write that did not finish); skipped")
                continue
            raise BadInput(f"{path}: line {n} is not valid JSON") from None
        if _state_line_ok(record):
            if record["id"] in entries:
                entries[record["id"]]["state"] = record["state"]
            continue
        if not _journal_entry_ok(record):
            raise BadInput(f"{path}: line {n} is not a vfiokit journal entry (id, kind, commands, files "
                           "with path, backup and written_sha256)")
        record.setdefault("state", "done")
        record["line"] = n
        entries[record["id"]] = record
    return Journal(tuple(entries.values()), tuple(notes))


def read_journal(root: str) -> list[dict]:
    """The journal's entries, oldest first ([] when there is none)."""
    return list(load_journal(root).entries)


def _state_line_ok(record: object) -> bool:
    return (isinstance(record, dict) and set(record) == {"id", "state"} and isinstance(record["id"], str)
            and record["state"] in _STATES)


def _journal_entry_ok(entry: object) -> bool:
    """Whether a journal line has what `undo_plan` reads (it was edited by hand, or cut short)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
        return False
    files, commands = entry.get("files"), entry.get("commands", [])
    return (isinstance(files, list) and isinstance(commands, list) and entry.get("state", "done") in _STATES
            and all(isinstance(c, list) and all(isinstance(a, str) for a in c) for c in commands)
            and all(isinstance(f, dict) and isinstance(f.get("path"), str)
                    and "backup" in f and isinstance(f["backup"], str | None)
                    and isinstance(f.get("mode", 0o644), int)
                    and "written_sha256" in f for f in files))


def _path_matches(path: str, pattern: str) -> bool:
    return path.count("/") == pattern.count("/") and fnmatch.fnmatchcase(path, pattern)


def _trusted(root: str, entry: dict) -> None:
    """Refuse an entry `apply` could not have written: undo copies its backups over its paths
    and runs its commands as root, so a hand-edited one must not name any file or command."""
    where = f"{os.path.join(root, BACKUP_DIR, JOURNAL)}: line {entry['line']}"
    if not _STAMP.fullmatch(entry["id"]):
        raise BadInput(f"{where}: id '{entry['id']}' is not one vfiokit writes; entry not used")
    allowed = UNDOABLE.get(entry.get("kind", ""), ())
    for f in entry["files"]:
        path, backup = f["path"], f["backup"]
        if os.path.normpath(path) != path or not any(_path_matches(path, p) for p in allowed):
            raise BadInput(f"{where}: {path!r} is not a file a '{entry.get('kind')}' change writes; "
                           "entry not used")
        if backup is not None and backup != f"{path.lstrip('/')}.{entry['id']}":
            raise BadInput(f"{where}: backup {backup!r} is not the one vfiokit keeps for {path} in "
                           f"/{BACKUP_DIR}; entry not used")
        if backup is None and f.get("existed", False):
            raise BadInput(f"{where}: {path} existed but the entry names no backup; entry not used")
    for argv in entry["commands"]:
        if tuple(argv) not in REFRESH_COMMANDS:
            raise BadInput(f"{where}: command {' '.join(argv)!r} is not a refresh command vfiokit runs; "
                           "entry not used")


def _read_backup(root: str, name: str) -> str | None:
    """A backup's text, never through a symlink (the name was checked by `_trusted`)."""
    path = os.path.join(root, BACKUP_DIR, name)
    folder = os.path.realpath(os.path.join(root, BACKUP_DIR))
    if not os.path.realpath(path).startswith(folder + os.sep):
        raise BadInput(f"{path}: leads out of /{BACKUP_DIR}; not used")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _fail(path, "read", e) from None
    with open(fd, encoding="utf-8", errors="surrogateescape", newline="") as f:
        return f.read()


@dataclass(frozen=True)
class _FileState:
    path: str
    real: str
    current: str | None
    backup: str | None
    #: "new" (what vfiokit wrote), "old" (the backup) or "other" (changed since).
    state: str


def _file_states(root: str, entry: dict) -> list[_FileState]:
    out = []
    for f in entry["files"]:
        real = resolve(os.path.join(root, f["path"].lstrip("/")), root)
        current = read_if_present(real)
        if f["backup"]:
            old = _read_backup(root, f["backup"])
            if old is None:
                raise VfiokitError(f"{os.path.join(root, BACKUP_DIR, f['backup'])}: backup missing; cannot undo",
                                   ExitCode.NOT_FOUND)
        else:
            old = None
        state = ("new" if _sha(current) == f["written_sha256"] else "old" if current == old else "other")
        out.append(_FileState(f["path"], real, current, old, state))
    return out


def _unfinished(root: str) -> tuple[list[str], list[tuple[dict, list[_FileState]]]]:
    """The journal's notes (a torn line, an entry not trusted) and each entry a kill left between
    its journal line and its end, with what its files hold now."""
    journal = load_journal(root)
    notes = list(journal.notes)
    found = []
    undone = {e["undoes"] for e in journal.entries if e.get("undoes")}
    for entry in journal.entries:
        if entry["state"] != "intent" or entry["id"] in undone:
            continue
        try:
            _trusted(root, entry)
        except BadInput as e:
            notes.append(f"an interrupted change is not finished: {e}")
            continue
        found.append((entry, _file_states(root, entry)))
    return notes, found


def interrupted(root: str) -> list[str]:
    """What each change interrupted between its journal entry and its end left, in words (for
    `boot status`; reading only: the next writing command finishes it)."""
    notes, found = _unfinished(root)
    for entry, states in found:
        new = [s.path for s in states if s.state != "old"]
        run = " then ".join(f"'{' '.join(a)}'" for a in entry["commands"])
        if not new:
            notes.append(f"change {entry['id']} was interrupted before it replaced any file: nothing to finish")
        else:
            notes.append(f"change {entry['id']} was interrupted after writing {', '.join(new)}"
                         + (f"; {run} may not have run" if run else "")
                         + ": the next vfiokit boot command finishes it ('boot undo' takes it back)")
    return notes


def _finish_interrupted(root: str, hooks: Hooks) -> list[str]:
    """Finish every change a kill left between its journal entry and its end (we hold the lock);
    return what was done, in words."""
    notes, found = _unfinished(root)
    for entry, states in found:
        kinds = {s.state for s in states}
        if kinds <= {"old"}:
            _journal(root, {"id": entry["id"], "state": "rolled-back"})
            notes.append(f"change {entry['id']} had been interrupted before it replaced any file: "
                         "marked rolled back")
        elif "old" in kinds:
            # Some files written, some not: the refresh never saw a whole change; put back the new ones.
            for s in states:
                if s.state != "old":
                    _replace(s.real, s.backup, 0o644, Hooks())
            _journal(root, {"id": entry["id"], "state": "rolled-back"})
            notes.append(f"change {entry['id']} had been interrupted half way: "
                         f"{', '.join(s.path for s in states if s.state != 'old')} put back")
        else:
            for argv in entry["commands"]:
                code, why = _command(argv, hooks)
                if code != 0:
                    notes.append(f"change {entry['id']} had been interrupted; finishing it, {' '.join(argv)} "
                                 f"failed (exit {code}{': ' + why if why else ''}); it is tried again on the "
                                 "next run, or 'boot undo' takes the change back")
                    break
            else:
                _journal(root, {"id": entry["id"], "state": "done"})
                ran = ", ".join(" ".join(a) for a in entry["commands"])
                notes.append(f"change {entry['id']} had been interrupted after writing "
                             f"{', '.join(s.path for s in states)}: finished" + (f" (ran {ran})" if ran else ""))
    return notes


def _took_effect(root: str, entry: dict) -> bool:
    """Whether an entry changed its files: done, or interrupted after a rename (the next writing
    command finishes it; `undo_plan` is made before that, so it judges by the files)."""
    if entry["state"] != "intent":
        return entry["state"] == "done"
    _trusted(root, entry)
    return any(s.state != "old" for s in _file_states(root, entry))


def undo_plan(root: str, kind: str | None = None) -> WritePlan:
    """A plan that restores the files of the last journal entry (of `kind`) not yet undone; its
    notes name files someone changed since vfiokit wrote them. Newer entries whose files already
    hold their backups are passed over (and marked skipped when the plan is applied). Raises
    VfiokitError when there is nothing to undo."""
    journal = load_journal(root)
    entries = journal.entries
    # An undo killed before its rename undid nothing: only what took effect counts.
    undone = {e["undoes"] for e in entries if e.get("undoes") and _took_effect(root, e)}
    skips: list[str] = []
    for entry in reversed(entries):
        if (entry.get("undoes") or entry["id"] in undone or not _took_effect(root, entry)
                or entry["state"] == "skipped" or (kind and entry.get("kind") != kind)):
            continue
        _trusted(root, entry)
        states = _file_states(root, entry)
        if all(s.current == s.backup for s in states):
            skips.append(entry["id"])
            continue
        changes, notes = [], list(journal.notes)
        for f, s in zip(entry["files"], states, strict=True):
            if s.state != "new":
                notes.append(f"{f['path']} was changed after vfiokit wrote it; undo also discards that")
            changes.append(FileChange(s.real, s.current, s.backup, f.get("mode", 0o644)))
        if skips:
            notes.append(f"passed over {len(skips)} newer change(s) whose files already hold what they had "
                         "before: " + ", ".join(skips))
        return WritePlan(tuple(changes), tuple(tuple(a) for a in entry["commands"]), tuple(notes), root,
                    entry.get("kind", "edit"), entry["id"], tuple(skips))
    raise VfiokitError(f"nothing to undo: no {kind + ' ' if kind else ''}change in "
                       f"{os.path.join(root, BACKUP_DIR, JOURNAL)}", ExitCode.NOT_FOUND)
