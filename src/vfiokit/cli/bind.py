"""`vfiokit bind` / `vfiokit unbind`: hand a device's IOMMU group to vfio-pci now, or give it back.

What Proxmox does at VM start anyway (every endpoint of the group, bridges left alone), done now so
the user sees it work or fail first. Gated by the `check` verdict exactly as `attach` is; the plan
(the sysfs writes, as shell lines, and what the host loses now) is shown first. The previous
driver of each function is recorded in `/var/backups/vfiokit/bound.json` (written through the
safe writer, so it is journaled and backed up) and `unbind` gives it back.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from vfiokit.cli import completion
from vfiokit.cli.confirm import execute_plan, go_ahead
from vfiokit.cli.next_boot import next_boot_status
from vfiokit.cli.output import note
from vfiokit.errors import BadInput, ExitCode, Refused, VfiokitError
from vfiokit.model import PciAddress, Topology

if TYPE_CHECKING:
    pass


def _options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed([
        click.argument("devices", nargs=-1, metavar="DEVICE...", shell_complete=completion.addresses),
        click.option("--root", type=click.Path(file_okay=False, exists=True), default="/", show_default=True,
                     help="Folder standing for / (its sys/, etc/, proc/)."),
        click.option("--dry-run", is_flag=True, help="Show the plan and stop."),
        click.option("-y", "--yes", is_flag=True, help="Do not ask before writing."),
        click.option("--script", is_flag=True, help="Print the live plan as a sh script and stop."),
    ]):
        f = opt(f)
    return f


def _targets(top: Topology, devices: tuple[str, ...], root: str = "/") -> list[PciAddress]:
    """The functions named on the command line, read as every command reads a device (an address,
    a slot `01:00` for the whole card, ids or a class word: `analyses/device_query`); a bridge is
    refused."""
    from vfiokit.analyses.device_query import resolve

    if not devices:
        raise click.UsageError("name at least one DEVICE (an address such as 04:00.0, or a slot such as 04:00)")
    out = resolve(devices, top, again="" if root == "/" else f"--root {root}")
    for a in out:
        if top.device(a).is_bridge:
            raise Refused(f"{a}: is a bridge: vfio-pci does not take bridges (Proxmox leaves them to "
                          "pcieport); name the device behind it", device=str(a))
    return out


def _topology(root: str) -> Topology:
    from vfiokit.sources import sysfs

    top = sysfs.read_topology(root)
    if top.groups is None:
        raise VfiokitError(f"{top.source}: no IOMMU groups: vfio-pci cannot take a device without one "
                           "(turn the IOMMU on: 'vfiokit boot iommu')", ExitCode.NO_IOMMU)
    return top


def _functions(top: Topology, addrs: list[PciAddress]) -> list[Any]:
    from vfiokit.edits.sysfs_bind import Function

    return [Function(str(a), top.device(a).driver) for a in addrs]


def _record(root: str, update: Callable[[dict[str, str | None]], dict[str, str | None]]) -> None:
    """Change the bind record through the safe writer (journaled, backed up)."""
    from vfiokit.edits import writer
    from vfiokit.formats import bind_state

    path = os.path.join(root, bind_state.PATH.lstrip("/"))
    old = writer.read_if_present(path)
    new = bind_state.serialize(update(bind_state.parse(old, bind_state.PATH)))
    writer.apply(writer.WritePlan((writer.FileChange(path, old, new),), root=root, kind="bind-record"))


def _show(lines: list[str], steps: list[Any], script: bool) -> None:
    if script:
        click.echo("#!/bin/sh\n# written by vfiokit: the live plan, in order\nset -e")
        for s in steps:
            click.echo(s.shell())
        return
    for ln in lines:
        click.echo(ln, err=True)
    for s in steps:
        click.echo(f"  {s.shell()}")


def _moved(root: str, addrs: list[str], want: Callable[[str], str | None]) -> list[str]:
    """Addresses whose driver after the writes is not the one wanted."""
    from vfiokit.edits.sysfs_bind import driver_of

    return [a for a in addrs if driver_of(root, a) != want(a)]


def _persistent_texts(root: str) -> dict[str, str | None]:
    from vfiokit.edits import persistent, writer

    out = {}
    for p in persistent.FILES:
        try:
            out[p] = writer.read_if_present(persistent.below(root, p))
        except OSError as e:
            raise BadInput(f"{p}: cannot read ({e.strerror})", file=p) from None
    return out


def _persistent_want(top: Topology, addrs: list[PciAddress]) -> tuple[Any, list[str]]:
    """What a persistent bind of `addrs` writes, and why it names them that way."""
    from vfiokit.analyses.vfio_binding import persistent_choice
    from vfiokit.edits.persistent import Wanted
    from vfiokit.formats.initramfs_modules import vfio_modules

    c = persistent_choice(top, addrs)
    mods = tuple(vfio_modules(top.host.kernel_release))
    if c.by == "ids":
        why = [f"by ids ({', '.join(c.ids)}): no other device on this host has them; a softdep makes "
               f"vfio-pci load before {', '.join(c.softdeps) or 'any other driver'}"]
        return Wanted(c.ids, c.softdeps, (), mods), why
    shared = ", ".join(f"{d.address.short} ({d.ids}, driver {d.driver or 'none'})" for d in c.others)
    why = [f"by address: options vfio-pci ids= would also take {shared or 'devices without ids'}; an "
           "initramfs script sets driver_override on the named functions only (as Unraid's vfio-pci.cfg)"]
    return Wanted((), (), tuple(str(a) for a in c.addresses), mods), why


_REFRESH_NOTE = ("update-initramfs -u -k all rebuilds every installed kernel's initramfs (on a "
                 "proxmox-boot-tool host its hook also copies them to every ESP); if it fails, every file "
                 "is put back")


def framebuffer_notes(top: Topology, addrs: list[PciAddress], root: str) -> list[str]:
    """When the firmware's console framebuffer sits in a BAR of one of `addrs`: the kernel
    parameter that releases it, offered through the boot editor, and what the console loses."""
    from vfiokit.analyses.vfio_binding import framebuffer_release
    from vfiokit.sources.framebuffer import framebuffer_holders

    param = framebuffer_release(top.host.kernel_release)
    return [f"{a}: the console framebuffer ({name}) sits in its BAR and keeps vfio-pci from reserving it; "
            f"'vfiokit boot add {param}' releases it at the next boot (the host console then stays "
            "black after the boot loader)"
            for a, name in framebuffer_holders(root, [str(a) for a in addrs]).items()]


def _bind_persistent(top: Topology, addrs: list[PciAddress], root: str, dry_run: bool, yes: bool) -> None:
    from vfiokit.edits import persistent

    want, why = _persistent_want(top, addrs)
    why += framebuffer_notes(top, addrs, root)
    plan = persistent.bind_plan(root, _persistent_texts(root), want, (*why, _REFRESH_NOTE,
                                "reboot to apply: the devices keep their drivers until then "
                                "('vfiokit bind' without --persistent moves them now)"))
    execute_plan(plan, dry_run, yes, "these devices already go to vfio-pci at boot",
                 "Write these files and rebuild the initramfs?", "; reboot to apply")


def _unbind_persistent(top: Topology, addrs: list[PciAddress], root: str, dry_run: bool, yes: bool) -> None:
    import dataclasses

    from vfiokit.analyses.vfio_binding import persistent_choice
    from vfiokit.edits import persistent
    from vfiokit.formats import modprobe

    texts = _persistent_texts(root)
    want, _ = _persistent_want(top, addrs)
    ids = persistent_choice(top, addrs).ids
    conf = texts[modprobe.VFIOKIT_CONF] or ""
    left = [i for i in modprobe.vfio_ids(conf) if i not in ids]
    # the softdeps only served the ids: they go with the last one
    want = dataclasses.replace(want, ids=ids, addresses=tuple(str(a) for a in addrs),
                               softdeps=() if left else tuple(modprobe.softdeps(conf)))
    plan = persistent.unbind_plan(root, texts, want, (_REFRESH_NOTE, "reboot to apply: the devices stay on "
                                  "vfio-pci until then ('vfiokit unbind' without --persistent gives them back now)"))
    execute_plan(plan, dry_run, yes, "vfiokit binds none of these at boot",
                 "Remove these and rebuild the initramfs?", "; reboot to apply")


def _status(root: str, devices: tuple[str, ...]) -> None:
    from vfiokit.cli.output import print_source_header
    from vfiokit.render.bind import status_lines
    from vfiokit.sources import sysfs

    top = sysfs.read_topology(root)
    print_source_header(top)
    rows = next_boot_status(top, root)
    if devices:
        wanted = {str(a) for a in _targets(top, devices, root)}
        rows = [r for r in rows if str(r.device.address) in wanted]
    for ln in status_lines(rows):
        click.echo(ln)


#: The tests' stand-in for the kernel's reaction to each sysfs write (None: the real kernel).
KERNEL_STANDIN: Any = None


@click.command()
@_options
@click.option("--force", is_flag=True, help="Bind although check says unsafe (the host needs a member).")
@click.option("--accept-siblings", is_flag=True, help="Accept that the group's other devices leave the host.")
@click.option("--persistent", is_flag=True, help="At every boot, before any host driver (files + initramfs).")
@click.option("--status", is_flag=True, help="Each device's driver now and at the next boot.")
def bind(devices: tuple[str, ...], root: str, dry_run: bool, yes: bool, script: bool, force: bool,
         accept_siblings: bool, persistent: bool, status: bool) -> None:
    """Hand DEVICE's IOMMU group (every endpoint, bridges left alone) to vfio-pci now."""
    if status:
        _status(root, devices)
        return
    from vfiokit.analyses.vfio_binding import VFIO, bind_functions, losses_now
    from vfiokit.cli.gate import check_gate
    from vfiokit.edits import sysfs_bind
    from vfiokit.render.bind import loss_lines, move_line

    top = _topology(root)
    addrs = bind_functions(top, _targets(top, devices, root))
    if persistent:
        check_gate(top, [str(a) for a in addrs], force, accept_siblings)
        _bind_persistent(top, addrs, root, dry_run, yes)
        return
    funcs = _functions(top, addrs)
    steps = sysfs_bind.bind_steps(funcs, not sysfs_bind.vfio_loaded(root))
    lines = [f"bind: {move_line(top.device(a), VFIO, top.device(a).iommu_group)}" for a in addrs
             if top.device(a).driver != VFIO]
    if not steps:
        click.echo(f"vfiokit: nothing to do: {', '.join(str(a) for a in addrs)} already on vfio-pci", err=True)
        return
    check_gate(top, [str(a) for a in addrs], force, accept_siblings)  # a script is a write to be
    for n in framebuffer_notes(top, addrs, root):
        note(n)
    _show([*lines, *loss_lines(losses_now(top, addrs))], steps, script)
    if script or not go_ahead(dry_run, yes, "Bind these to vfio-pci now?"):
        return
    sysfs_bind.run(root, steps, after_write=KERNEL_STANDIN)
    moved = [f.address for f in funcs if f.driver != VFIO]
    _record(root, lambda b: {**b, **{f.address: b.get(f.address, f.driver) for f in funcs if f.driver != VFIO}})
    missed = _moved(root, moved, lambda a: VFIO)
    if missed:
        raise VfiokitError(f"{', '.join(missed)}: vfio-pci did not take it (driver now: "
                           f"{sysfs_bind.driver_of(root, missed[0]) or 'none'}); 'vfiokit unbind' gives it back",
                           ExitCode.WRITE_FAILED, device=missed[0])
    groups = sorted({top.device(a).iommu_group for a in addrs if top.device(a).iommu_group is not None})
    dev_nodes = [f"/dev/vfio/{g}" for g in groups]
    present = [d for d in dev_nodes if os.path.exists(os.path.join(root, d.lstrip("/")))]
    click.echo(f"vfiokit: bound {', '.join(moved)} to vfio-pci" +
               (f"; {', '.join(present)} ready" if present else "") +
               "; 'vfiokit unbind' gives them back", err=True)


@click.command()
@_options
@click.option("--persistent", is_flag=True, help="Take back what 'bind --persistent' wrote.")
def unbind(devices: tuple[str, ...], root: str, dry_run: bool, yes: bool, script: bool, persistent: bool) -> None:
    """Give DEVICE's IOMMU group back from vfio-pci to the drivers it had."""
    from vfiokit.analyses.vfio_binding import VFIO, bind_functions
    from vfiokit.edits import sysfs_bind, writer
    from vfiokit.formats import bind_state
    from vfiokit.render.bind import move_line

    top = _topology(root)
    addrs = bind_functions(top, _targets(top, devices, root))
    if persistent:
        _unbind_persistent(top, addrs, root, dry_run, yes)
        return
    funcs = _functions(top, addrs)
    record = bind_state.parse(writer.read_if_present(os.path.join(root, bind_state.PATH.lstrip("/"))))
    overridden = [f.address for f in funcs
                  if _override(root, f.address) == VFIO or f.address in record]
    steps = sysfs_bind.unbind_steps(funcs, overridden)
    if not steps:
        click.echo(f"vfiokit: nothing to do: {', '.join(str(a) for a in addrs)} not on vfio-pci", err=True)
        return
    back = [f.address for f in funcs if f.driver == VFIO or f.address in overridden]
    lines = [f"unbind: {move_line(top.device(PciAddress.parse(a)), record.get(a), None)}" for a in back]
    _show(lines, steps, script)
    if script or not go_ahead(dry_run, yes, "Give these back to their drivers now?"):
        return
    sysfs_bind.run(root, steps, after_write=KERNEL_STANDIN)
    _record(root, lambda b: {a: d for a, d in b.items() if a not in back})
    for a in back:
        now = sysfs_bind.driver_of(root, a)
        if a in record and record[a] is not None and now != record[a]:
            note(f"{a}: now on {now or 'no driver'}, it had {record[a]} before bind")
    given = [f"{a} ({sysfs_bind.driver_of(root, a) or 'no driver'})" for a in back]
    click.echo(f"vfiokit: gave back {', '.join(given)}", err=True)


def _override(root: str, address: str) -> str | None:
    from vfiokit import rootfs

    value = rootfs.read_attr(rootfs.resolve_under(root, f"/sys/bus/pci/devices/{address}/driver_override"))
    return None if value in (None, "", "(null)") else value
