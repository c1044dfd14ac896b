"""What hands devices to vfio-pci at the next boot, read below the root: the `ids=` of every
modprobe.d file, the addresses of vfiokit's initramfs script, and vfiokit's live-bind record."""

from __future__ import annotations

import glob
import os
from typing import NamedTuple

from vfiokit import rootfs
from vfiokit.formats import bind_state, initramfs_hook, modprobe


class VfioConfig(NamedTuple):
    #: id -> the file that lists it (modprobe.d `options vfio-pci ids=`).
    modprobe_ids: dict[str, str]
    #: Addresses vfiokit's initramfs script hands to vfio-pci.
    hook_addresses: tuple[str, ...]
    #: Address -> driver before the live bind (bound.json).
    bound: dict[str, str | None]


def read_vfio_config(root: str) -> VfioConfig:
    ids: dict[str, str] = {}
    base = rootfs.resolve_under(root, "/etc/modprobe.d")
    # kmod reads /etc/modprobe.d/*.conf in name order (modprobe.d(5)); the last ids= wins per file
    for path in sorted(glob.glob(os.path.join(base, "*.conf"))):
        for i in modprobe.vfio_ids(rootfs.text_under(root, "/etc/modprobe.d/" + os.path.basename(path)) or ""):
            ids.setdefault(i, "/etc/modprobe.d/" + os.path.basename(path))
    hook = initramfs_hook.addresses(rootfs.text_under(root, initramfs_hook.PATH))
    bound = bind_state.parse(rootfs.text_under(root, bind_state.PATH))
    return VfioConfig(ids, tuple(hook), bound)
