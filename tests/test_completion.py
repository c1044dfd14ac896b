"""Shell completion offers what exists: sample names, the addresses of the chosen source, the VMs
of the node, the boot parameters already set. In-process through click's own completion
machinery, and through bash with the script the package ships (scripts/gen_docs.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.shell_completion import ShellComplete
from scripts.gen_docs import BASH_COMPLETION

from tests.bootroot import write
from vfiokit.cli import main
from vfiokit.sources import samples

B550 = "asus-tuf-b550-plus"
SRC = Path(__file__).parents[1] / "src"
LISTING = Path(__file__).parent / "fixtures" / "listings" / "01-asus-prime-b350-plus-r5-2600x.txt"


def complete(args: list[str], incomplete: str) -> list[str]:
    comp = ShellComplete(main, {}, "vfiokit", "_VFIOKIT_COMPLETE")
    return [c.value for c in comp.get_completions(args, incomplete)]


def test_commands_complete():
    assert complete([], "ch") == ["check"]
    assert complete(["boot"], "re") == ["remove"]


def test_sample_names_complete_on_every_read_command():
    assert complete(["groups", "--sample"], "asus") == [B550]
    assert complete(["check", "--sample"], "") == samples.names()
    assert complete(["simulate", "--sample"], "lab-") == [n for n in samples.names() if n.startswith("lab-")]


def test_device_addresses_are_the_chosen_sources():
    assert complete(["check", "--sample", B550], "07:") == ["07:00.0"]
    assert complete(["check", "--sample", B550], "0000:04:00") == ["0000:04:00.0", "0000:04:00.1"]
    assert complete(["simulate", "--sample", B550, "--alone"], "0a") == ["0a:00.0"]
    # a pasted listing's own addresses, not the sample's
    got = complete(["check", "--listing", str(LISTING)], "06:")
    assert got == ["06:00.0", "06:00.1"]


def test_an_unreadable_source_completes_nothing_and_prints_nothing(tmp_path, capsys):
    assert complete(["check", "--snapshot", str(tmp_path / "missing.json")], "") == []
    assert complete(["check", "--sample", "no-such-board"], "") == []
    assert capsys.readouterr() == ("", "")


def test_vmids_are_the_nodes_vm_configs(tmp_path):
    for vmid in ("100", "101", "2000"):
        write(tmp_path, f"etc/pve/qemu-server/{vmid}.conf", "memory: 2048\n")
    write(tmp_path, "etc/pve/qemu-server/notes.txt", "")
    assert complete(["attach", "--root", str(tmp_path)], "") == ["100", "101", "2000"]
    assert complete(["detach", "--root", str(tmp_path)], "10") == ["100", "101"]


def test_boot_remove_offers_the_parameters_already_set(tmp_path):
    write(tmp_path, "etc/default/grub",
          'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=on iommu=pt"\nGRUB_CMDLINE_LINUX=""\n')
    assert complete(["boot", "remove", "--root", str(tmp_path)], "") == ["quiet", "amd_iommu=on", "iommu=pt"]
    assert complete(["boot", "remove", "--root", str(tmp_path)], "i") == ["iommu=pt"]


def test_bash_completes_addresses_across_the_colon_bash_splits_at(tmp_path):
    """What a user's bash does with the shipped script: COMP_WORDS split at ':' (COMP_WORDBREAKS),
    COMP_LINE whole; the answers replace only what follows the last ':'."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "vfiokit"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m vfiokit "$@"\n')
    shim.chmod(0o755)
    script = tmp_path / "vfiokit.bash"
    script.write_text(BASH_COMPLETION)
    probe = f"""source {script}
COMP_LINE="vfiokit check --sample {B550} 04:0"; COMP_POINT=${{#COMP_LINE}}
COMP_WORDS=(vfiokit check --sample {B550} 04 : 0); COMP_CWORD=6
_vfiokit_completion vfiokit; printf '%s\\n' "${{COMPREPLY[@]}}"
COMP_LINE="vfiokit groups --sample as"; COMP_POINT=${{#COMP_LINE}}; COMPREPLY=()
_vfiokit_completion vfiokit; printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(SRC)}
    out = subprocess.run(["bash", "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    # bash keeps "04:" and appends these: the line reads 04:00.0 / 04:00.1
    assert out.split() == ["00.0", "00.1", B550]
