"""What an edit will do, complete before anything is touched: `WritePlan` (the new text of each
file, the commands to run after, notes), and what `apply` did (`Applied`)."""

from __future__ import annotations

from dataclasses import dataclass

from vfiokit.formats.diff import unified_diff
from vfiokit.formats.host_paths import shown_path


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
