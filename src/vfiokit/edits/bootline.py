"""Plans that change the next boot's kernel command line, in the file that really decides it. Pure:
it reads the texts a `BootSetup` carries and returns a writer `WritePlan`; nothing is written here.
What the configuration says now (`configured`) is `formats/boot_setup.py`'s, which reading commands
use without this module and the writer behind it."""

from __future__ import annotations

from collections.abc import Sequence

from vfiokit.edits.write_plan import FileChange, WritePlan
from vfiokit.errors import Refused
from vfiokit.formats import cmdline
from vfiokit.formats import grub_default as grub
from vfiokit.formats.boot_setup import BootSetup, configured, kernel_cmdline_parts
from vfiokit.formats.host_paths import shown_path


def _kernel_cmdline_line(setup: BootSetup) -> tuple[str, str, str]:
    """(path, first line, rest of the file) of /etc/kernel/cmdline; Refused when vfiokit will
    not edit it."""
    path, first, rest, refusal = kernel_cmdline_parts(setup)
    if refusal:
        raise Refused(f"{shown_path(path, setup.root)}: {refusal}", file=shown_path(path, setup.root))
    return path, first, rest


def plan(setup: BootSetup, add: Sequence[str] = (), remove: Sequence[str] = ()) -> WritePlan:
    """The plan that adds then removes parameters in the deciding file (empty when nothing
    changes), with the refresh command and a reboot note."""
    for p in (*add, *remove):
        cmdline.check_param(p)
    notes: list[str] = []
    if setup.uses_kernel_cmdline:
        path, first, rest = _kernel_cmdline_line(setup)
        new_first = cmdline.remove(cmdline.add(first, add), remove)
        if not any(cmdline.key_of(t) == "root" for t in cmdline.tokens(new_first)):
            raise Refused(f"removing root= from {shown_path(path, setup.root)} would leave the host unbootable",
                          file=shown_path(path, setup.root))
        old_text = setup.kernel_cmdline[1] if setup.kernel_cmdline else ""
        change = FileChange(path, old_text, new_first + rest)
    else:
        # Read with the paths the user knows (/etc/...), so a refusal names the file as the host sees it.
        real = {shown_path(p, setup.root): p for p, _ in setup.grub_files}
        s = grub.deciding([(shown_path(p, setup.root), t) for p, t in setup.grub_files])
        texts = dict(setup.grub_files)
        if s is None:
            path = setup.grub_files[0][0]
            value = cmdline.remove(cmdline.add("", add), remove)
            new = grub.append_assignment(texts[path], value) if value else texts[path]
        else:
            path = real[s.path]
            value = cmdline.remove(cmdline.add(s.value, add), remove)
            new = grub.set_value(texts[path], s, value)
        change = FileChange(path, texts[path], new)
        conf = configured(setup)
        if conf.linux:
            for p in remove:
                if any(cmdline.key_of(t) == cmdline.key_of(p) for t in cmdline.tokens(conf.linux)):
                    notes.append(f"{p.partition('=')[0]} is also in GRUB_CMDLINE_LINUX, which vfiokit leaves "
                                 "alone; remove it there by hand if it must go")
            for p in add:
                same = [t for t in cmdline.tokens(conf.linux) if cmdline.key_of(t) == cmdline.key_of(p)]
                if same and not cmdline.has(conf.linux, p):
                    # 10_linux writes GRUB_CMDLINE_LINUX first; for most parameters (vfio-pci.ids
                    # included: a module parameter is set once per occurrence) the later one wins.
                    notes.append(f"{p.partition('=')[0]} is also in GRUB_CMDLINE_LINUX ({' '.join(same)}), "
                                 "which vfiokit leaves alone: the kernel gets both and the later one, this "
                                 "one, usually wins; merge them by hand if both values must stay")
    if change.changes:
        notes.append(reboot_note((setup.refresh,)))
    return WritePlan((change,), (setup.refresh,), tuple(notes), setup.root, "boot")


def reboot_note(commands: Sequence[Sequence[str]]) -> str:
    """What every change of the next boot's command line (undo included) must say."""
    first = " then ".join(f"'{' '.join(c)}'" for c in commands)
    return ("reboot to apply: the running kernel keeps its command line until then"
            + (f" ({first} runs first)" if first else ""))
