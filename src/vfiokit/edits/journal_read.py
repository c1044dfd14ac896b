"""The writer's journal as read: its entries (`load_journal`), the rules by which an entry is
trusted (`trusted`), what an entry's files hold now (`file_states`), and what a change a kill
interrupted left (`interrupted`, for `boot status`). Reading only: `edits/journal.py` appends to it,
finishes interrupted changes and undoes, with these; a reading command imports this alone.

`<root>/var/backups/vfiokit/journal.jsonl` has one JSON line per applied plan (time, kind, files
with their backup, the SHA-256 of what was written, the commands) and one short line per change
of state (`{"id": ..., "state": "done" | "rolled-back" | "skipped"}`).

The journal is not trusted blindly: an entry is used only if its backup is the one `apply` names
inside the backup folder, its path is a file that its kind of change writes (`UNDOABLE`: a new kind
of journaled edit must be registered there, or its undo is refused) and its commands are known
refresh commands (`REFRESH_COMMANDS`). A torn last line (a write cut short) is skipped with a note.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import re
import stat
from dataclasses import dataclass

from vfiokit.edits.host_files import BACKUP_DIR, JOURNAL, fail, owned, read_if_present, resolve
from vfiokit.errors import BadInput, ExitCode, Refused, VfiokitError

#: The commands a journal entry may make `undo` run (the refresh commands `sources/boot.py` plans).
REFRESH_COMMANDS = (("update-grub",), ("proxmox-boot-tool", "refresh"), ("pve-efiboot-tool", "refresh"),
                    ("update-initramfs", "-u", "-k", "all"))
#: The files each kind of journaled change writes, as the host sees them (`*` stays inside one
#: folder): `undo` restores nothing else, whatever a hand-edited journal says.
UNDOABLE = {"boot": ("/etc/default/grub", "/etc/default/grub.d/*.cfg", "/etc/kernel/cmdline"),
            # edits/persistent.py FILES (the live-bind record, bound.json, is not undone by file:
            # `vfiokit unbind` gives the devices back)
            "bind-persistent": ("/etc/modprobe.d/vfiokit.conf", "/etc/initramfs-tools/scripts/init-top/00vfiokit-bind",
                                "/etc/modules-load.d/vfio.conf", "/etc/initramfs-tools/modules")}
#: A journal id, which is also the suffix of every backup that entry names.
_STAMP = re.compile(r"\d{8}T\d{6}\.\d{6}Z")
#: States a journal entry goes through; an entry of an older vfiokit (no state) is "done".
_STATES = ("intent", "done", "rolled-back", "skipped")


def sha256_of(text: str | None) -> str | None:
    import hashlib  # here: `boot status` needs a digest only when a change was interrupted

    return None if text is None else hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


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
        raise fail(path, "read", e) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or not owned(st):
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


def _matches_pattern(path: str, pattern: str) -> bool:
    return path.count("/") == pattern.count("/") and fnmatch.fnmatchcase(path, pattern)


def trusted(root: str, entry: dict) -> None:
    """Refuse an entry `apply` could not have written: undo copies its backups over its paths
    and runs its commands as root, so a hand-edited one must not name any file or command."""
    where = f"{os.path.join(root, BACKUP_DIR, JOURNAL)}: line {entry['line']}"
    if not _STAMP.fullmatch(entry["id"]):
        raise BadInput(f"{where}: id '{entry['id']}' is not one vfiokit writes; entry not used")
    allowed = UNDOABLE.get(entry.get("kind", ""), ())
    for f in entry["files"]:
        path, backup = f["path"], f["backup"]
        if os.path.normpath(path) != path or not any(_matches_pattern(path, p) for p in allowed):
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
        raise fail(path, "read", e) from None
    with open(fd, encoding="utf-8", errors="surrogateescape", newline="") as f:
        return f.read()


@dataclass(frozen=True)
class FileState:
    path: str
    real: str
    current: str | None
    backup: str | None
    #: "new" (what vfiokit wrote), "old" (the backup) or "other" (changed since).
    state: str


def file_states(root: str, entry: dict) -> list[FileState]:
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
        state = ("new" if sha256_of(current) == f["written_sha256"] else "old" if current == old else "other")
        out.append(FileState(f["path"], real, current, old, state))
    return out


def unfinished(root: str) -> tuple[list[str], list[tuple[dict, list[FileState]]]]:
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
            trusted(root, entry)
        except BadInput as e:
            notes.append(f"an interrupted change is not finished: {e}")
            continue
        found.append((entry, file_states(root, entry)))
    return notes, found


def interrupted(root: str) -> list[str]:
    """What each change interrupted between its journal entry and its end left, in words (for
    `boot status`; reading only: the next writing command finishes it)."""
    notes, found = unfinished(root)
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
