"""`vfiokit boot`: see and change the kernel command line of the next boot, safely.

Every change is a plan first (diff, refresh command, reboot note); `--dry-run` stops there,
otherwise the user confirms (or passes `--yes`) and the one safe writer applies it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from vfiokit.cli import completion
from vfiokit.cli.confirm import go_ahead
from vfiokit.cli.output import note
from vfiokit.errors import BadInput, VfiokitError

ACS_WARNING = (
    "pcie_acs_override tells the kernel to believe PCIe ports isolate devices when the hardware "
    "does not say so: devices then split into separate IOMMU groups although they can still reach "
    "each other's memory by peer-to-peer DMA without hardware isolation. A VM given one of them may "
    "read or corrupt memory of the host or of another VM. The option only exists in patched kernels "
    "(such as Proxmox's); elsewhere it is ignored."
)


def _root_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--root", type=click.Path(file_okay=False, exists=True), default="/", show_default=True,
                        help="Folder standing for / (its etc/, proc/, sys/, boot/).")(f)


def _change_options(f: Callable[..., Any]) -> Callable[..., Any]:
    @_root_option
    @click.option("--dry-run", is_flag=True, help="Show the plan (diff, refresh command) and stop.")
    @click.option("-y", "--yes", is_flag=True, help="Apply without asking.")
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return f(*args, **kwargs)

    return wrapper


def _execute(plan: Any, dry_run: bool, yes: bool, nothing: str) -> None:
    """Show `plan`, then apply it unless this is a dry run or the user says no."""
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
    if not go_ahead(dry_run, yes, "Apply this change?"):
        return
    done = writer.apply(plan)
    for n in done.notes:  # an interrupted change finished first, a journal line not written
        note(n)
    ran = "; ran " + ", ".join(" ".join(a) for a in done.commands) if done.commands else ""
    kept = f" (previous content kept in /{writer.BACKUP_DIR}/)" if done.backups else ""
    click.echo(f"vfiokit: wrote {', '.join(done.files)}{kept}{ran}", err=True)


def _change(root: str, add: Sequence[str], remove: Sequence[str], dry_run: bool, yes: bool) -> None:
    from vfiokit.edits import bootline
    from vfiokit.sources.boot import read_boot

    setup = read_boot(root)
    what = " ".join([*add, *(f"-{p}" for p in remove)])
    _execute(bootline.plan(setup, add, remove), dry_run, yes,
             f"the command line already reads that way ({what})")


@click.group()
def boot() -> None:
    """The kernel command line: GRUB or proxmox-boot-tool, changed safely."""


@boot.command()
@_root_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (versioned envelope).")
def status(root: str, as_json: bool) -> None:
    """Which boot path, which file decides, what is configured, running and pending."""
    from vfiokit.analyses.boot_state import boot_state
    from vfiokit.edits import bootline, writer
    from vfiokit.edits.writer import shown_path
    from vfiokit.render.boot_status import boot_status_json, boot_status_lines
    from vfiokit.sources.boot import read_boot

    setup = read_boot(root)
    try:  # a change killed half way (kill, hang-up): the next writing command finishes it
        unfinished = writer.interrupted(root)
    except VfiokitError as e:
        unfinished = [f"the journal cannot be read: {e}"]
    conf = bootline.configured(setup)
    full = f"{conf.linux or ''} {conf.value}".strip()
    complete = conf.known and (setup.uses_kernel_cmdline or conf.linux is not None)
    state = boot_state(full, setup.running, setup.generated, complete)

    data = boot_status_json(setup, conf, state, shown_path(conf.path, setup.root))
    data["interrupted_changes"] = unfinished
    if as_json:
        from vfiokit.render.envelope import envelope

        sys.stdout.write(envelope("boot-status", f"tree {setup.root}" if setup.root != "/" else "live host",
                                  [], boot=data))
        return
    click.echo("\n".join(boot_status_lines(setup, conf, state, data["deciding_file"])))
    for n in unfinished:
        note(n)


@boot.command()
@click.argument("params", nargs=-1, required=True)
@_change_options
def add(params: tuple[str, ...], root: str, dry_run: bool, yes: bool) -> None:
    """Add kernel parameters (a=1 replaces a=2; list values such as vfio-pci.ids merge)."""
    _change(root, params, (), dry_run, yes)


@boot.command()
@click.argument("params", nargs=-1, required=True, shell_complete=completion.boot_params)
@_change_options
def remove(params: tuple[str, ...], root: str, dry_run: bool, yes: bool) -> None:
    """Remove kernel parameters: KEY removes it whatever its value, KEY=VALUE only that value."""
    _change(root, (), params, dry_run, yes)


@boot.command()
@click.option("--pt", is_flag=True, help="Also add iommu=pt (host devices skip IOMMU translation).")
@_change_options
def iommu(pt: bool, root: str, dry_run: bool, yes: bool) -> None:
    """Turn the IOMMU on where the kernel needs a parameter for it (Intel before kernel 6.8)."""
    from vfiokit.analyses.iommu_state import IOMMU_OFF, iommu_params
    from vfiokit.edits import bootline
    from vfiokit.formats import cmdline
    from vfiokit.sources.boot import read_boot

    setup = read_boot(root)
    params, why = iommu_params(setup.host, pt)
    # An off switch in the configuration is why there is no IOMMU, whatever the firmware says.
    offs = [t for t in cmdline.tokens(bootline.configured(setup).value) if t in IOMMU_OFF]
    note(f"{' '.join(offs)} turns the IOMMU off: vfiokit takes it away" if offs else why)
    if not params and not offs:
        click.echo("vfiokit: nothing to add", err=True)
        return
    _change(root, params, offs, dry_run, yes)


def predicted_groups(root: str, modes: str) -> list[str] | None:
    """Before/after group summary of the tree below `root`, or None when it has no PCI devices or
    no IOMMU groups."""
    from vfiokit.analyses.override_effect import override_effect
    from vfiokit.render.boot_status import override_effect_lines
    from vfiokit.sources import sysfs

    try:
        top = sysfs.read_topology(root)
    except VfiokitError:
        return None
    effect = override_effect(top, modes)
    return None if effect is None else override_effect_lines(effect)


@boot.command("acs-override")
@click.argument("modes", default="downstream,multifunction")
@_change_options
def acs_override(modes: str, root: str, dry_run: bool, yes: bool) -> None:
    """Add pcie_acs_override=MODES (default downstream,multifunction), with a warning."""
    from vfiokit.analyses.acs_override import NONE, parse_override

    if parse_override(modes) == NONE:  # the same strict reading `simulate` uses
        raise BadInput("'none' is not a mode to add: 'vfiokit boot remove pcie_acs_override' takes the override off")
    words = [w.strip() for w in modes.split(",") if w.strip()]
    click.echo(f"vfiokit: warning: {ACS_WARNING}", err=True)
    summary = predicted_groups(root, ",".join(words))
    if summary is None:
        note("no group prediction here: it needs the PCI tree below --root, with IOMMU groups")
    else:
        for line in summary:
            note(line)
    _change(root, [f"pcie_acs_override={','.join(words)}"], (), dry_run, yes)


@boot.command()
@_change_options
def undo(root: str, dry_run: bool, yes: bool) -> None:
    """Restore the files the last 'vfiokit boot' change wrote (shown as a diff first)."""
    import dataclasses

    from vfiokit.edits import bootline, writer

    plan = writer.undo_plan(root, "boot")
    if not plan.empty:
        plan = dataclasses.replace(plan, notes=(*plan.notes, bootline.reboot_note(plan.commands)))
    _execute(plan, dry_run, yes, "the files already hold their previous content")
