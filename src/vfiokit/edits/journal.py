"""The writer's journal: one JSON line per applied plan, read back for `undo` and to finish a
change a kill interrupted.

The journal is written ahead: the entry (paths, backups, hashes, commands) is appended with state
"intent" BEFORE the first rename, and a line marking it "done" (or "rolled-back") after. A run
killed in between leaves an "intent" entry; the next `apply` (any writing command) finishes it
before doing anything else (`finish_interrupted`): files all new -> run the commands again and mark
it done; files all old -> mark it rolled back; some new, some old -> put the new ones back from
their backups. `undo_plan(root, kind)` turns the last entry not yet undone back into a plan
(itself applied through `apply`, so an undo is shown as a diff and journaled); undoing again goes
one change further back, as a stack.

The file's layout, the rules by which an entry is trusted and `interrupted(root)` (what such an
entry left, for `boot status`) are `edits/journal_read.py`'s, so a reading command reads the
journal without the writer.
"""

from __future__ import annotations

import json
import os

from vfiokit.edits.atomic import Hooks, open_private, replace_file, run_command
from vfiokit.edits.host_files import BACKUP_DIR, JOURNAL, fail
from vfiokit.edits.journal_read import file_states, load_journal, trusted, unfinished
from vfiokit.edits.write_plan import FileChange, WritePlan
from vfiokit.errors import ExitCode, VfiokitError


def append_record(root: str, record: dict) -> None:
    """Append one line to the journal and fsync it. A line cut short by an earlier failure (disk
    full, a kill mid-write) is cut off first, so every line stays whole."""
    path = os.path.join(root, BACKUP_DIR, JOURNAL)
    fd = open_private(path, os.O_RDWR)
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
        raise fail(path, "write the journal", e) from None
    finally:
        os.close(fd)


def finish_interrupted(root: str, hooks: Hooks) -> list[str]:
    """Finish every change a kill left between its journal entry and its end (we hold the lock);
    return what was done, in words."""
    notes, found = unfinished(root)
    for entry, states in found:
        kinds = {s.state for s in states}
        if kinds <= {"old"}:
            append_record(root, {"id": entry["id"], "state": "rolled-back"})
            notes.append(f"change {entry['id']} had been interrupted before it replaced any file: "
                         "marked rolled back")
        elif "old" in kinds:
            # Some files written, some not: the refresh never saw a whole change; put back the new ones.
            for s in states:
                if s.state != "old":
                    replace_file(s.real, s.backup, 0o644, Hooks())
            append_record(root, {"id": entry["id"], "state": "rolled-back"})
            notes.append(f"change {entry['id']} had been interrupted half way: "
                         f"{', '.join(s.path for s in states if s.state != 'old')} put back")
        else:
            for argv in entry["commands"]:
                code, why = run_command(argv, hooks)
                if code != 0:
                    notes.append(f"change {entry['id']} had been interrupted; finishing it, {' '.join(argv)} "
                                 f"failed (exit {code}{': ' + why if why else ''}); it is tried again on the "
                                 "next run, or 'boot undo' takes the change back")
                    break
            else:
                append_record(root, {"id": entry["id"], "state": "done"})
                ran = ", ".join(" ".join(a) for a in entry["commands"])
                notes.append(f"change {entry['id']} had been interrupted after writing "
                             f"{', '.join(s.path for s in states)}: finished" + (f" (ran {ran})" if ran else ""))
    return notes


def _took_effect(root: str, entry: dict) -> bool:
    """Whether an entry changed its files: done, or interrupted after a rename (the next writing
    command finishes it; `undo_plan` is made before that, so it judges by the files)."""
    if entry["state"] != "intent":
        return entry["state"] == "done"
    trusted(root, entry)
    return any(s.state != "old" for s in file_states(root, entry))


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
        trusted(root, entry)
        states = file_states(root, entry)
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
