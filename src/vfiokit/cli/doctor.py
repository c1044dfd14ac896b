"""`vfiokit doctor [VMID|DEVICE]`: every precondition of passthrough, checked, with the fix.

Exit codes (the `check` verdict codes, same meaning one level up): 0 every check ok, 10 at least
one warning (passthrough works, at a cost or with a risk), 11 at least one failure (it will not
work, or hurts the host); 3 unreadable source, 4 no such VM or device.
"""

from __future__ import annotations

import sys

import click

from vfiokit.cli.output import note, print_markup, print_source_header
from vfiokit.errors import DeviceNotFound, ExitCode

_EXIT = {"ok": ExitCode.OK, "warn": ExitCode.COSTLY, "fail": ExitCode.UNSAFE}


def _boot_facts(root: str):  # -> BootFacts | None
    """`boot status`'s facts for a root folder; None where the boot loader is not one vfiokit
    reads (the check then says "not checked")."""
    from vfiokit.analyses.boot_state import boot_state
    from vfiokit.analyses.doctor_input import BootFacts
    from vfiokit.errors import VfiokitError
    from vfiokit.formats.boot_setup import configured
    from vfiokit.formats.host_paths import shown_path
    from vfiokit.sources.boot import read_boot

    try:
        setup = read_boot(root)
        conf = configured(setup)
    except VfiokitError:
        return None
    full = f"{conf.linux or ''} {conf.value}".strip()
    complete = conf.known and (setup.uses_kernel_cmdline or conf.linux is not None)
    state = boot_state(full, setup.running, setup.generated, complete)
    return BootFacts(shown_path(conf.path, setup.root), " ".join(setup.refresh), state)


@click.command()
@click.argument("subject", required=False, metavar="[VMID|DEVICE]")
@click.option("--root", type=click.Path(), default=None,
              help="Read the host from this folder instead of / (its sys/, proc/, etc/).")
@click.option("--snapshot", "snapshot_file", type=click.Path(), default=None,
              help="Read a snapshot file written by 'vfiokit snapshot'.")
@click.option("--sample", default=None, help="Read a bundled sample machine (see 'vfiokit samples').")
@click.option("--json", "as_json", is_flag=True, help="Every check with id, status, evidence and fix.")
def doctor(subject: str | None, root: str | None, snapshot_file: str | None, sample: str | None,
           as_json: bool) -> None:
    """Check every precondition of PCI passthrough: firmware, kernel, modules, devices, VMs.

    With VMID, that VM's passthrough too; with DEVICE (07:00.0, or 01:00 for every function of
    the card), that device.
    Exit status: 0 all ok, 10 warnings, 11 failures.
    """
    from vfiokit.analyses.device_query import resolve
    from vfiokit.analyses.doctor import run, worst
    from vfiokit.analyses.doctor_input import DoctorInput
    from vfiokit.render.doctor import doctor_json, doctor_text
    from vfiokit.sources import doctor_facts

    given = [(o, v) for o, v in (("--root", root), ("--snapshot", snapshot_file), ("--sample", sample)) if v]
    chosen = [o for o, _ in given]
    if len(chosen) > 1:
        raise click.UsageError(f"choose one source: {' and '.join(chosen)} were both given")
    top, facts = doctor_facts.load(root, snapshot_file, sample)
    boot = _boot_facts(root or "/") if not (snapshot_file or sample) else None
    vmid, devices = None, ()
    if subject and subject.isdigit():
        vmid = subject
        if subject not in ((facts or {}).get("pve") or {}).get("vms", {}):
            raise DeviceNotFound(f"VM {subject}: no /etc/pve/qemu-server/{subject}.conf in {top.source}")
    elif subject:
        # read as every command reads a device (address, slot, ids, class word: device_query)
        devices = tuple(resolve([subject], top, again=" ".join(f"{o} {v}" for o, v in given)))
    findings = run(DoctorInput(top, facts, boot, vmid, devices))
    notes = list(top.notes)
    if facts is None:
        notes.append(f"{top.source} was captured before doctor: ACPI tables, modules, /proc/iomem and VM "
                     "options are not in it (take a new snapshot)")
    if as_json:
        from vfiokit.render.envelope import envelope

        sys.stdout.write(envelope("doctor", top.source, notes, **doctor_json(findings)))
    else:
        from vfiokit.pciids import PciIds

        print_source_header(top)
        print_markup(doctor_text(findings, top, PciIds.system()))
        for n in notes:
            note(n)
    code = _EXIT[worst(findings)]
    if code != ExitCode.OK:
        # Not an error: the verdict is the answer; the code lets a monitoring script act on it.
        raise SystemExit(int(code))
