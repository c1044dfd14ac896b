"""`vfiokit boot`: see and change the kernel command line of the next boot, safely.

Every change is a plan first (diff, refresh command, reboot note); `--dry-run` stops there,
otherwise the user confirms (or passes `--yes`) and the one safe writer applies it.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from vfiokit.cli import completion
from vfiokit.cli.common import SuggestingGroup
from vfiokit.cli.confirm import execute_plan
from vfiokit.cli.output import note
from vfiokit.errors import BadInput, Refused, VfiokitError

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


def _change(root: str, add: Sequence[str], remove: Sequence[str], dry_run: bool, yes: bool) -> None:
    from vfiokit.edits import bootline
    from vfiokit.sources.boot import read_boot

    setup = read_boot(root)
    what = " ".join([*add, *(f"-{p}" for p in remove)])
    execute_plan(bootline.plan(setup, add, remove), dry_run, yes,
             f"the command line already reads that way ({what})")


@click.group(cls=SuggestingGroup)
def boot() -> None:
    """The kernel command line: GRUB or proxmox-boot-tool, changed safely."""


def _unknown_loader(root: str, reason: str, as_json: bool) -> None:
    from vfiokit.analyses.iommu_state import diagnose
    from vfiokit.render.boot_status import unknown_loader, unknown_loader_lines
    from vfiokit.sources.sysfs import read_host

    host = read_host(root)
    data = unknown_loader(reason, host, None if host.iommu_units else diagnose(host).explanation)
    if as_json:
        from vfiokit.render.envelope import envelope

        sys.stdout.write(envelope("boot-status", "live host" if os.path.abspath(root) == "/" else f"tree {root}",
                                  [], boot=data))
        return
    click.echo("\n".join(unknown_loader_lines(data)))


@boot.command()
@_root_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (versioned envelope).")
def status(root: str, as_json: bool) -> None:
    """Which boot path, which file decides, what is configured, running and pending."""
    from vfiokit.analyses.boot_state import boot_state
    from vfiokit.edits.journal_read import interrupted
    from vfiokit.formats.boot_setup import configured
    from vfiokit.formats.host_paths import shown_path
    from vfiokit.render.boot_status import boot_status_json, boot_status_lines
    from vfiokit.sources.boot import read_boot

    try:
        setup = read_boot(root)
    except Refused as e:
        # Reading is never a refusal: say what is known, exit 0 (README "boot status").
        _unknown_loader(root, str(e), as_json)
        return
    try:  # a change killed half way (kill, hang-up): the next writing command finishes it
        unfinished = interrupted(root)
    except VfiokitError as e:
        unfinished = [f"the journal cannot be read: {e}"]
    conf = configured(setup)
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


def _check_vfio_ids(root: str, params: Sequence[str], force: bool) -> None:
    """`vfio-pci.ids=` catches every device with those ids, the identical disk under / too: name
    each one, refuse (exit 8) when the host cannot live without one of them unless --force."""
    from vfiokit.analyses.vfio_binding import ids_catch
    from vfiokit.errors import Refused
    from vfiokit.formats import cmdline, modprobe
    from vfiokit.sources import sysfs

    ids = [i for p in params if cmdline.key_of(p) == "vfio_pci.ids"
           for i in modprobe.parse_ids(p.partition("=")[2], p)]
    if not ids:
        return
    try:
        top = sysfs.read_topology(root)
    except VfiokitError:
        note("cannot tell which devices these ids catch: no PCI tree below --root")
        return
    from vfiokit.pciids import PciIds, lspci_line
    from vfiokit.render.needs import need_detail, need_loss

    caught = ids_catch(top, ids)
    for pci_id, devs in caught.matches.items():
        note(f"vfio-pci.ids={pci_id} catches {len(devs)} device(s) at boot" + (":" if devs else ": none on this host"))
        for d in devs:
            note(f"  {lspci_line(d, PciIds.system())}  driver {d.driver or 'none'}")
    if caught.critical:
        what = "; ".join(f"{n.address.short}: {need_loss(n)} ({need_detail(n)})" for n in caught.critical)
        message = f"vfio-pci.ids would take from the host what it cannot live without: {what}"
        hint = ("'vfiokit bind --persistent DEVICE' binds by address instead; --force adds the ids anyway")
        if not force:
            raise Refused(message, hint=hint)
        note(f"--force: {message}")


@boot.command()
@click.argument("params", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Add vfio-pci.ids although they catch a device the host needs.")
@_change_options
def add(params: tuple[str, ...], force: bool, root: str, dry_run: bool, yes: bool) -> None:
    """Add kernel parameters (a=1 replaces a=2; list values such as vfio-pci.ids merge)."""
    _check_vfio_ids(root, params, force)
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
    from vfiokit.formats import cmdline
    from vfiokit.formats.boot_setup import configured
    from vfiokit.sources.boot import read_boot

    setup = read_boot(root)
    params, why = iommu_params(setup.host, pt)
    # An off switch in the configuration is why there is no IOMMU, whatever the firmware says.
    offs = [t for t in cmdline.tokens(configured(setup).value) if t in IOMMU_OFF]
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
    execute_plan(plan, dry_run, yes, "the files already hold their previous content")
