"""The one confirm-and-apply flow every write command ends with (boot, bind, attach, detach,
cluster map), and `execute_plan`, which shows a file plan of the safe writer first (boot, bind).

The plan has been shown before `go_ahead` is called; here: `--dry-run` stops with one wording and exit 0,
otherwise the user is asked (unless `--yes`), "no" is exit 9 with one wording, and `apply` runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from vfiokit.cli.output import note
from vfiokit.errors import ExitCode, VfiokitError

DRY_RUN = "vfiokit: dry run: nothing written"
ANSWERED_NO = "nothing changed (answered no)"


def go_ahead(dry_run: bool, yes: bool, question: str) -> bool:
    """False on a dry run (said once on stderr); ask `question` unless `yes`; "no" raises exit 9."""
    if dry_run:
        click.echo(DRY_RUN, err=True)
        return False
    if not yes and not click.confirm(question, default=False, err=True):
        raise VfiokitError(ANSWERED_NO, ExitCode.ABORTED)
    return True


def confirm_and_apply(dry_run: bool, yes: bool, question: str, apply: Callable[[], object]) -> bool:
    """`go_ahead`, then `apply()`; True when it was applied."""
    if not go_ahead(dry_run, yes, question):
        return False
    apply()
    return True


def execute_plan(plan: Any, dry_run: bool, yes: bool, nothing: str, question: str = "Apply this change?",
                 after: str = "") -> None:
    """Show a file plan of the safe writer (diff, refresh commands, notes), then apply it unless
    this is a dry run or the user says no; `after` ends the closing line ("; reboot to apply")."""
    from vfiokit.edits import writer

    if plan.empty:
        click.echo(f"vfiokit: nothing to change: {nothing}", err=True)
        for n in plan.notes:  # such as a parameter that GRUB_CMDLINE_LINUX still gives
            note(n)
        return
    sys.stdout.write(plan.diff())
    for argv in plan.commands:
        click.echo(f"then run: {' '.join(argv)}")
    for n in plan.notes:
        note(n)
    if not go_ahead(dry_run, yes, question):
        return
    done = writer.apply(plan)
    for n in done.notes:  # an interrupted change finished first, a journal line not written
        note(n)
    ran = "; ran " + ", ".join(" ".join(a) for a in done.commands) if done.commands else ""
    kept = f" (previous content kept in /{writer.BACKUP_DIR}/)" if done.backups else ""
    click.echo(f"vfiokit: wrote {', '.join(done.files)}{kept}{ran}{after}", err=True)
