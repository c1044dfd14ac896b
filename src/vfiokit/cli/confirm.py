"""The one confirm-and-apply flow every write command ends with (boot, attach, detach, cluster map).

The plan has been shown before this is called; here: `--dry-run` stops with one wording and exit 0,
otherwise the user is asked (unless `--yes`), "no" is exit 9 with one wording, and `apply` runs.
"""

from __future__ import annotations

from collections.abc import Callable

import click

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
