"""`bind --persistent` / `unbind --persistent` as one write plan for the safe writer.

The files (host view; the writer puts them below the root):
- `/etc/modprobe.d/vfiokit.conf`: `options vfio-pci ids=` and the softdeps (binding by ids);
- `/etc/initramfs-tools/scripts/init-top/00vfiokit-bind`: driver_override by address;
- `/etc/modules-load.d/vfio.conf` and `/etc/initramfs-tools/modules`: the vfio modules, early;
then `update-initramfs -u -k all` so the initramfs carries them (on a proxmox-boot-tool host its
initramfs hook copies the new images to every ESP). If the refresh fails, the writer puts every
file back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from vfiokit.edits.writer import FileChange, WritePlan, resolve
from vfiokit.formats import initramfs_hook, initramfs_modules, modprobe

REFRESH = ("update-initramfs", "-u", "-k", "all")
KIND = "bind-persistent"
#: Every file a persistent bind may touch.
FILES = (modprobe.VFIOKIT_CONF, initramfs_hook.PATH, initramfs_modules.MODULES_LOAD,
         initramfs_modules.INITRAMFS_MODULES)


@dataclass(frozen=True)
class Wanted:
    """What to add or take back: ids (with softdeps) or addresses, and the vfio modules."""

    ids: tuple[str, ...]
    softdeps: tuple[str, ...]
    addresses: tuple[str, ...]
    modules: tuple[str, ...]


def below(root: str, path: str) -> str:
    """The real file behind host path `path` below `root` (links resolved, never leaving it)."""
    return resolve(os.path.join(root, path.lstrip("/")), root)


def _plan(root: str, texts: Mapping[str, str | None], new: Mapping[str, str | None],
          notes: tuple[str, ...]) -> WritePlan:
    changes = tuple(FileChange(below(root, p), texts[p], new[p], 0o755 if p == initramfs_hook.PATH else 0o644)
                    for p in FILES)
    effective = any(c.changes for c in changes)
    return WritePlan(changes, (REFRESH,) if effective else (), notes, root, KIND)


def bind_plan(root: str, texts: Mapping[str, str | None], want: Wanted, notes: tuple[str, ...]) -> WritePlan:
    """Add `want` to the files (`texts`: their current content, None when absent)."""
    new = dict(texts)
    if want.ids:
        new[modprobe.VFIOKIT_CONF] = modprobe.with_binding(texts[modprobe.VFIOKIT_CONF], list(want.ids),
                                                          list(want.softdeps))
    if want.addresses:
        have = initramfs_hook.addresses(texts[initramfs_hook.PATH])
        new[initramfs_hook.PATH] = initramfs_hook.render(have + [a for a in want.addresses if a not in have])
    for path in (initramfs_modules.MODULES_LOAD, initramfs_modules.INITRAMFS_MODULES):
        new[path] = initramfs_modules.with_modules(texts[path], list(want.modules))
    return _plan(root, texts, new, notes)


def unbind_plan(root: str, texts: Mapping[str, str | None], want: Wanted, notes: tuple[str, ...]) -> WritePlan:
    """Take `want` back out; the vfio modules go too once nothing is bound at boot any more."""
    new = dict(texts)
    conf = texts[modprobe.VFIOKIT_CONF]
    if conf is not None:
        new[modprobe.VFIOKIT_CONF] = modprobe.without_binding(conf, list(want.ids), list(want.softdeps))
    left = [a for a in initramfs_hook.addresses(texts[initramfs_hook.PATH]) if a not in want.addresses]
    if texts[initramfs_hook.PATH] is not None:
        new[initramfs_hook.PATH] = initramfs_hook.render(left) if left else None
    if new[modprobe.VFIOKIT_CONF] is None and new[initramfs_hook.PATH] is None:
        for path in (initramfs_modules.MODULES_LOAD, initramfs_modules.INITRAMFS_MODULES):
            text = texts[path]
            if text is not None:
                new[path] = initramfs_modules.without_modules(text, list(want.modules))
    return _plan(root, texts, new, notes)
