"""What is configured for the next boot against what the running kernel got. Pure.

"Pending a refresh": parameters configured for GRUB but not yet in `/boot/grub/grub.cfg`, whose
`linux` lines `update-grub` writes from `GRUB_CMDLINE_LINUX` and `GRUB_CMDLINE_LINUX_DEFAULT`.
"Pending a reboot": parameters configured but missing from `/proc/cmdline`, and parameters the
running kernel got that the configuration no longer sets (leaving out those the boot loader adds
itself: `BOOT_IMAGE`, `root`, `ro`, ... from GRUB's `10_linux` and systemd-boot's entries).
"""

from __future__ import annotations

from dataclasses import dataclass

from vfiokit.formats import cmdline

#: Parameters the boot loader or its scripts add, not the user's configuration.
LOADER_KEYS = frozenset({"boot_image", "initrd", "root", "ro", "rw", "boot", "rootflags", "rootfstype",
                         "vt.handoff"})


@dataclass(frozen=True)
class BootState:
    #: Configured but not in the boot loader's generated config yet (None: unknown here).
    refresh_adds: tuple[str, ...] | None
    refresh_removes: tuple[str, ...] | None
    #: Configured but not in the running kernel's command line (None: /proc/cmdline unknown;
    #: removals are None too when part of the configuration could not be read).
    reboot_adds: tuple[str, ...] | None
    reboot_removes: tuple[str, ...] | None


def _diff(have: str, want: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(in want, not in have; in have, not in want) by the command-line rules."""
    adds = tuple(cmdline.missing(have, cmdline.tokens(want)))
    removes = tuple(t for t in cmdline.tokens(have)
                    if cmdline.key_of(t).lower() not in LOADER_KEYS and not cmdline.has(want, t))
    return adds, removes


def boot_state(configured: str, running: str | None, generated: str | None,
               complete: bool = True) -> BootState:
    """`configured`: every parameter the configuration gives the kernel (for GRUB
    `GRUB_CMDLINE_LINUX` then `GRUB_CMDLINE_LINUX_DEFAULT`); `generated`: the parameters of the
    boot loader's generated entry, when readable; `complete`: False when part of the
    configuration could not be read (then nothing is said about removals)."""
    ref = _diff(generated, configured) if generated is not None else (None, None)
    reb = _diff(running, configured) if running is not None else (None, None)
    if not complete:
        ref, reb = (ref[0], None), (reb[0], None)
    return BootState(ref[0], ref[1], reb[0], reb[1])
