"""`vfiokit check DEVICE...`: what passing these devices to a VM takes from the host.

Exit codes a script can use: 0 alone or harmless, 10 costly, 11 unsafe, 4 not found
(3 malformed address or bridge, 5 no IOMMU).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from vfiokit.cli import completion
from vfiokit.cli.common import source_again, source_options, source_root, with_target_resets
from vfiokit.cli.output import note, print_markup, print_source_header
from vfiokit.errors import ExitCode
from vfiokit.model import Topology
from vfiokit.pciids import PciIds

_EXIT = {"ALONE": ExitCode.OK, "HARMLESS": ExitCode.OK, "COSTLY": ExitCode.COSTLY, "UNSAFE": ExitCode.UNSAFE}


@click.command()
@click.argument("devices", nargs=-1, required=True, metavar="DEVICE...", shell_complete=completion.addresses)
@source_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (versioned envelope).")
def check(devices: tuple[str, ...], source: Callable[[], Topology], as_json: bool) -> None:
    """Say what passing DEVICE to a VM takes from the host.

    DEVICE is a PCI address with or without domain (07:00.0, 0000:07:00.0), BB:DD for every
    function of a slot (01:00) as Proxmox's hostpci accepts, ids (10de:1430) or a class word
    (gpu, vga, nic, sata, nvme, usb, audio, hba); a word that names several devices lists them.
    Exit status: 0 alone/harmless, 10 costly, 11 unsafe, 4 no such device.
    """
    from vfiokit.analyses.device_query import resolve
    from vfiokit.analyses.passthrough import judge
    from vfiokit.render.check import verdict_text
    from vfiokit.render.reasons import verdict_notes

    top = _read(devices, source)
    targets = resolve(devices, top, again=source_again())
    top = with_target_resets(top, targets)  # the verdict judges no other device's reset
    verdict = judge(top, targets)
    ids = PciIds.system()
    if as_json:
        from vfiokit.render.documents import check_document

        sys.stdout.write(check_document(top, verdict, ids))
    else:
        print_source_header(top)
        print_markup(verdict_text(verdict, ids, top, source_again()))
        # After the names: pci.ids' note says the damaged lines their lookups reached.
        for n in [*top.notes, *verdict_notes(verdict), *filter(None, [ids.missing_note])]:
            note(n)
    code = _EXIT[verdict.level.name]
    if code != ExitCode.OK:
        # Not an error: the verdict itself is the answer; the code lets a script act on it.
        raise SystemExit(int(code))


def _read(devices: tuple[str, ...], source: Callable[..., Topology]) -> Topology:
    """What the verdict on `devices` reads, without reset methods. From the live host or --root:
    only the functions around them when the words are addresses (`sysfs_around`), else the whole
    host. Other sources as they are."""
    from vfiokit.analyses.device_query import places

    root = source_root()
    named = places(devices)
    if root is not None and named is not None:
        from vfiokit.sources.sysfs_around import read_around

        top = read_around(root, named)
        if top is not None:
            return top
    return source(reset_methods=False)
