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
4. gives it the old file's owner and mode, fsyncs it, keeps a timestamped backup of the old
   content, renames it over the target (atomic on POSIX) and fsyncs the folder;
5. runs the plan's commands (`update-grub`, `proxmox-boot-tool refresh`, ...); if one fails,
   every file of the plan is put back (through the same atomic steps) and the error is reported
   as one line (exit WRITE_FAILED).

Nothing is written, backed up or run when no file's text changes.

Backups and the journal live below the root the plan was made for:
`<root>/var/backups/vfiokit/<path>.<UTC timestamp>` holds a previous content, and
`<root>/var/backups/vfiokit/journal.jsonl` has one JSON line per applied plan (time, kind, files
with their backup, the SHA-256 of what was written, the commands). `undo_plan(root, kind)` turns
the last entry not yet undone back into a plan (itself applied through `apply`, so an undo is
shown as a diff and journaled); undoing again goes one change further back, as a stack.

A plan with `root=None` (a file the user named on the command line, such as a snapshot) is
written with the same atomic steps but without backup or journal.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import glob
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from vfiokit import rootfs
from vfiokit.errors import BadInput, Conflict, ExitCode, Refused, VfiokitError
from vfiokit.formats.diff import unified_diff

BACKUP_DIR = "var/backups/vfiokit"
JOURNAL = "journal.jsonl"
TMP_SUFFIX = ".vfiokit-tmp"

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
    #: Set on a plan made by `undo_plan`: the journal entry it undoes.
    undoes: str | None = None

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


@dataclass
class Hooks:
    before_rename: BeforeRename | None = None
    runner: Runner | None = None
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
    named as the host sees it."""
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


def _clean_stale_temps(path: str) -> None:
    """Remove temporary files a killed vfiokit left next to `path` (we hold the lock)."""
    pattern = os.path.join(glob.escape(os.path.dirname(path) or "."),
                           f".{glob.escape(os.path.basename(path))}.*{TMP_SUFFIX}")
    for stale in glob.glob(pattern, include_hidden=True):
        with contextlib.suppress(OSError):
            os.unlink(stale)


@contextlib.contextmanager
def _locked(root: str | None) -> Iterator[None]:
    if root is None:
        yield
        return
    folder = os.path.join(root, BACKUP_DIR)
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise _fail(os.path.join(folder, ".lock"), "create the lock", e) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict("another vfiokit is changing this host right now; try again when it is done") from None
        yield
    finally:
        os.close(fd)


def _run(argv: Sequence[str]) -> tuple[int, str]:
    try:
        p = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return 127, "command not found"
    except OSError as e:
        return 126, e.strerror or str(e)
    lines = [ln.strip() for ln in (p.stderr or p.stdout or "").splitlines() if ln.strip()]
    return p.returncode, lines[-1] if lines else ""


def _backup(plan: WritePlan, change: FileChange, stamp: str) -> str | None:
    """Save the previous content; return the backup's path relative to the backup folder."""
    if change.old_text is None or plan.root is None:
        return None
    rel = plan.shown_path(change.path).lstrip("/")
    name = f"{rel}.{stamp}"
    dest = os.path.join(plan.root, BACKUP_DIR, name)
    try:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
    except OSError as e:
        raise _fail(dest, "create the backup folder", e) from None
    # Only root reads backups: the files saved may hold what their owner kept private.
    _replace(dest, change.old_text, 0o600, Hooks())
    return name


def _sha(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _journal(plan: WritePlan, entry: dict) -> None:
    path = os.path.join(plan.root or "/", BACKUP_DIR, JOURNAL)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise _fail(path, "write the journal", e) from None


def apply(plan: WritePlan, hooks: Hooks | None = None) -> Applied:
    """Apply `plan` (see the module text for the steps). Raises VfiokitError; on any failure the
    files are as they were."""
    hooks = hooks or Hooks()
    todo = plan.effective
    if not todo:
        return Applied((), ())
    with _locked(plan.root):
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
        at = hooks.now()
        stamp = at.strftime("%Y%m%dT%H%M%S.%fZ")
        done: list[tuple[FileChange, str]] = []
        backups: list[str | None] = []
        try:
            for c, real in zip(todo, reals, strict=True):
                backups.append(_backup(plan, c, stamp))
                _replace(real, c.new_text, c.mode, hooks)
                done.append((c, real))
            for argv in plan.commands:
                code, why = (hooks.runner or _run)(argv)
                if code != 0:
                    raise VfiokitError(f"{' '.join(argv)} failed (exit {code}{': ' + why if why else ''})",
                                       ExitCode.WRITE_FAILED)
        except BaseException as e:
            restored = _restore(done, plan)
            if isinstance(e, VfiokitError) and done:
                e.args = (f"{e}; {restored}",)
            raise
        journal_id = None
        if plan.root is not None:
            journal_id = stamp
            _journal(plan, {
                "id": stamp, "at": at.isoformat(timespec="seconds"), "kind": plan.kind,
                "undoes": plan.undoes, "commands": [list(a) for a in plan.commands],
                "files": [{"path": plan.shown_path(c.path), "backup": b, "existed": c.old_text is not None,
                           "mode": c.mode, "written_sha256": _sha(c.new_text)}
                          for c, b in zip(todo, backups, strict=True)],
            })
        return Applied(tuple(plan.shown_path(c.path) for c in todo), plan.commands,
                       tuple(b for b in backups if b), journal_id)


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


def read_journal(root: str) -> list[dict]:
    """The journal's entries, oldest first ([] when there is none)."""
    path = os.path.join(root, BACKUP_DIR, JOURNAL)
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise _fail(path, "read", e) from None
    entries = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BadInput(f"{path}: line {n} is not valid JSON") from None
        if not _journal_entry_ok(entry):
            raise BadInput(f"{path}: line {n} is not a vfiokit journal entry (id, kind, commands, files "
                           "with path, backup and written_sha256)")
        entries.append(entry)
    return entries


def _journal_entry_ok(entry: object) -> bool:
    """Whether a journal line has what `undo_plan` reads (it was edited by hand, or cut short)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
        return False
    files, commands = entry.get("files"), entry.get("commands", [])
    return (isinstance(files, list) and isinstance(commands, list)
            and all(isinstance(c, list) and all(isinstance(a, str) for a in c) for c in commands)
            and all(isinstance(f, dict) and isinstance(f.get("path"), str)
                    and "backup" in f and isinstance(f["backup"], str | None)
                    and "written_sha256" in f for f in files))


def undo_plan(root: str, kind: str | None = None) -> WritePlan:
    """A plan that restores the files of the last journal entry (of `kind`) not yet undone; its
    notes name files someone changed since vfiokit wrote them. Raises VfiokitError when there is
    nothing to undo."""
    entries = read_journal(root)
    undone = {e["undoes"] for e in entries if e.get("undoes")}
    for entry in reversed(entries):
        if entry.get("undoes") or entry["id"] in undone or (kind and entry.get("kind") != kind):
            continue
        changes, notes = [], []
        for f in entry["files"]:
            real = resolve(os.path.join(root, f["path"].lstrip("/")), root)
            current = read_if_present(real)
            if f["backup"]:
                backup = os.path.join(root, BACKUP_DIR, f["backup"])
                old = read_if_present(backup)
                if old is None:
                    raise VfiokitError(f"{backup}: backup missing; cannot undo", ExitCode.NOT_FOUND)
            else:
                old = None
            if _sha(current) != f["written_sha256"]:
                notes.append(f"{f['path']} was changed after vfiokit wrote it; undo also discards that")
            changes.append(FileChange(real, current, old, f.get("mode", 0o644)))
        return WritePlan(tuple(changes), tuple(tuple(a) for a in entry["commands"]), tuple(notes), root,
                    entry.get("kind", "edit"), entry["id"])
    raise VfiokitError(f"nothing to undo: no {kind + ' ' if kind else ''}change in "
                       f"{os.path.join(root, BACKUP_DIR, JOURNAL)}", ExitCode.NOT_FOUND)
