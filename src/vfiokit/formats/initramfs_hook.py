"""The initramfs-tools boot script that hands devices to vfio-pci by address. Pure: no I/O.

`vfio-pci.ids=` (or `options vfio-pci ids=`) takes every device with those ids; when one of them
is the identical disk under `/`, the devices must be named by address instead. This script, copied
into the initramfs from `/etc/initramfs-tools/scripts/init-top/`, writes `vfio-pci` into each
listed function's `driver_override` before udev loads the drivers (what Unraid's vfio-pci.cfg does
from its own boot script): from then on only vfio-pci may claim it (drivers/pci/pci-driver.c
`pci_match_device`), and vfio-pci, loaded early from the initramfs modules list, does.

Order: initramfs-tools runs init-top scripts in the order `get_prereq_pairs | tsort` gives
(scripts/functions); scripts without prerequisites come in the folder's alphabetical order, so
the name starts with `00` to run before `udev`, which triggers the module loading. The setting
is the kernel's, so it survives the switch to the real root file system.
"""

from __future__ import annotations

import re

from vfiokit.errors import BadInput

PATH = "/etc/initramfs-tools/scripts/init-top/00vfiokit-bind"
_LIST = "VFIOKIT_ADDRESSES="
_ADDR = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")


def render(addresses: list[str]) -> str:
    """The script for `addresses` (`0000:08:00.0` form)."""
    for a in addresses:
        if not _ADDR.fullmatch(a):
            raise BadInput(f"'{a}' is not a full PCI address (DDDD:BB:DD.F)")
    return f"""#!/bin/sh
# Written by vfiokit bind --persistent: these functions go to vfio-pci at boot, before any other
# driver (driver_override, drivers/pci/pci-driver.c). 'vfiokit unbind --persistent' removes it.
PREREQ=""
prereqs() {{ echo "$PREREQ"; }}
case "$1" in
prereqs) prereqs; exit 0 ;;
esac
{_LIST}"{' '.join(addresses)}"
for dev in $VFIOKIT_ADDRESSES; do
	if [ -w "/sys/bus/pci/devices/$dev/driver_override" ]; then
		echo vfio-pci > "/sys/bus/pci/devices/$dev/driver_override"
	else
		echo "vfiokit: $dev: no such PCI device, not handed to vfio-pci" >&2
	fi
done
exit 0
"""


def addresses(text: str | None) -> list[str]:
    """The addresses a script vfiokit wrote lists ([] for none or no file)."""
    for line in (text or "").split("\n"):
        if line.startswith(_LIST):
            return [a for a in line[len(_LIST):].strip('"').split() if _ADDR.fullmatch(a)]
    return []
