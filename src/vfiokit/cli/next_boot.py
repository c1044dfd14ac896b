"""The driver each device has now and will have at the next boot, read from what below a root
decides it. Shared by `bind --status` and the `groups` column (commands do not import each other).
"""

from __future__ import annotations

from vfiokit.analyses.vfio_binding import DriverStatus
from vfiokit.errors import VfiokitError
from vfiokit.model import Topology


def next_boot_status(top: Topology, root: str, *, changes_only: bool = False) -> list[DriverStatus]:
    """Every endpoint's driver now and at the next boot, from what below `root` decides it: the
    configured kernel command line's `vfio_pci.ids=`, modprobe.d's `ids=`, vfiokit's initramfs
    script and bind record (`bind --status` and the `groups` column both read it here); with
    `changes_only`, only the endpoints whose driver changes (the `groups` column marks those)."""
    from vfiokit.analyses.vfio_binding import driver_status, next_boot_changes
    from vfiokit.formats import cmdline, modprobe
    from vfiokit.formats.boot_setup import configured
    from vfiokit.sources.boot import read_boot
    from vfiokit.sources.vfio_config import read_vfio_config

    conf = read_vfio_config(root)
    try:
        line = configured(read_boot(root)).value
    except VfiokitError:
        line = ""  # no boot configuration below the root: the command line adds nothing
    ids = [i for t in cmdline.tokens(line) if cmdline.key_of(t) == "vfio_pci.ids"
           for i in modprobe.parse_ids(t.partition("=")[2], t)]
    rows = next_boot_changes if changes_only else driver_status
    return rows(top, ids, conf.modprobe_ids, conf.hook_addresses, conf.bound)
