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

The journal is written ahead (the entry before the first rename, its end after), and a change a
kill interrupted is finished by the next `apply`; `edits/journal.py` holds that and `undo_plan`,
`edits/journal_read.py` the reading and the rules by which an entry is trusted. The atomic steps
on one file are `edits/atomic.py`, the reading of files below a root `edits/host_files.py`.

Nothing is written, backed up or run when no file's text changes.

Backups and the journal live below the root the plan was made for:
`<root>/var/backups/vfiokit/<path>.<UTC timestamp>` holds a previous content, and
`<root>/var/backups/vfiokit/journal.jsonl` the journal. The backup folder (0700), the journal
(0600) and the lock are refused when they are symlinks or owned by another user than root (or the
user running vfiokit).

A plan with `root=None` (a file the user named on the command line, such as a snapshot) is
written with the same atomic steps but without backup or journal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence

from vfiokit.edits.atomic import (
    TMP_SUFFIX,
    Hooks,
    backup_folder,
    clean_stale_temps,
    open_private,
    private_dirs,
    replace_file,
    run_command,
)
from vfiokit.edits.host_files import BACKUP_DIR, JOURNAL, fail, read_if_present, resolve
from vfiokit.edits.journal import append_record, finish_interrupted, undo_plan
from vfiokit.edits.journal_read import (
    REFRESH_COMMANDS,
    UNDOABLE,
    interrupted,
    load_journal,
    read_journal,
    sha256_of,
)
from vfiokit.edits.write_plan import Applied, FileChange, WritePlan
from vfiokit.errors import Conflict, ExitCode, VfiokitError
from vfiokit.formats.host_paths import shown_path

#: What callers and tests use, at the one door (the parts live in atomic, journal and write_plan).
__all__ = ["BACKUP_DIR", "JOURNAL", "REFRESH_COMMANDS", "TMP_SUFFIX", "UNDOABLE", "Applied", "FileChange",
           "Hooks", "WritePlan", "apply", "interrupted", "load_journal", "read_if_present", "read_journal",
           "resolve", "shown_path", "undo_plan"]


@contextlib.contextmanager
def _locked(root: str | None) -> Iterator[None]:
    if root is None:
        yield
        return
    fd = open_private(os.path.join(backup_folder(root), ".lock"), os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict("another vfiokit is changing this host right now; try again when it is done") from None
        yield
    finally:
        os.close(fd)


def _backup(plan: WritePlan, change: FileChange, stamp: str) -> str | None:
    """Save the previous content; return the backup's path relative to the backup folder."""
    if change.old_text is None or plan.root is None:
        return None
    rel = plan.shown_path(change.path).lstrip("/")
    name = f"{rel}.{stamp}"
    folder = os.path.join(plan.root, BACKUP_DIR)
    dest = os.path.join(folder, name)
    try:
        private_dirs(folder, os.path.dirname(name))
    except OSError as e:
        raise fail(dest, "create the backup folder", e) from None
    # Only root reads backups: the files saved may hold what their owner kept private.
    replace_file(dest, change.old_text, 0o600, Hooks())
    return name


def _clean_backup_temps(root: str) -> None:
    """Remove temporary files a killed vfiokit left while writing a backup (we hold the lock)."""
    folder = os.path.join(root, BACKUP_DIR)
    for here, _dirs, names in os.walk(folder):
        for name in names:
            if name.startswith(".") and name.endswith(TMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(here, name))


def _unlink_backups(root: str, backups: Sequence[str | None]) -> None:
    for b in backups:
        if b:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(root, BACKUP_DIR, b))


def apply(plan: WritePlan, hooks: Hooks | None = None) -> Applied:
    """Apply `plan` (see the module text for the steps). Raises VfiokitError; on any failure the
    files are as they were, and the message says so (or says exactly what is not).

    It stays whole because its order is the guarantee: lock, check, backups, journal intent,
    renames, commands, journal end, each step's rollback next to it; split, a reader could no
    longer check that no path writes before the intent or skips a rollback."""
    hooks = hooks or Hooks()
    todo = plan.effective
    if not todo:
        return Applied((), ())
    with _locked(plan.root):
        notes = finish_interrupted(plan.root, hooks) if plan.root is not None else []
        reals = [resolve(c.path, plan.root) for c in todo]
        for c, real in zip(todo, reals, strict=True):
            try:
                now_text = read_if_present(real)
            except OSError as e:
                raise fail(c.path, "read", e) from None
            if now_text != c.old_text:
                raise Conflict(f"{plan.shown_path(c.path)} changed since vfiokit read it; nothing "
                               "was written, run the command again")
            if plan.root is not None:
                clean_stale_temps(real)
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
                append_record(plan.root, {
                    "id": stamp, "at": at.isoformat(timespec="seconds"), "kind": plan.kind,
                    "undoes": plan.undoes, "commands": [list(a) for a in plan.commands], "state": "intent",
                    "files": [{"path": plan.shown_path(c.path), "backup": b, "existed": c.old_text is not None,
                               "mode": c.mode, "written_sha256": sha256_of(c.new_text)}
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
                replace_file(real, c.new_text, c.mode, hooks)
                done.append((c, real))
            for argv in plan.commands:
                code, why = run_command(argv, hooks)
                if code != 0:
                    raise VfiokitError(f"{' '.join(argv)} failed (exit {code}{': ' + why if why else ''})",
                                       ExitCode.WRITE_FAILED)
        except BaseException as e:
            restored = _restore(done, plan)
            if plan.root is not None and "NOT" not in restored:
                try:
                    append_record(plan.root, {"id": stamp, "state": "rolled-back"})
                except VfiokitError:
                    restored += " (the journal still calls it interrupted; the next run marks it rolled back)"
            if isinstance(e, VfiokitError) and done:
                e.args = (f"{e}; {restored}",)
            raise
        if plan.root is not None:
            try:
                for skipped in plan.skips:
                    append_record(plan.root, {"id": skipped, "state": "skipped"})
                append_record(plan.root, {"id": stamp, "state": "done"})
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
            replace_file(real, c.old_text, c.mode, Hooks())
        except VfiokitError:
            failed.append(plan.shown_path(c.path))
    names = ", ".join(plan.shown_path(c.path) for c, _ in done)
    if failed:
        return f"could NOT restore {', '.join(failed)} (backup in {os.path.join('/', BACKUP_DIR)})"
    return f"{names} restored"
