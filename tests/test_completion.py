"""Shell completion offers what exists: sample names, the addresses of the chosen source, the VMs
of the node, the boot parameters already set. In-process through click's own completion
machinery, and once through bash with the script `_VFIOKIT_COMPLETE=bash_source` prints."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.shell_completion import ShellComplete

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


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is part of every Debian system")
def test_bash_completes_through_the_script_click_generates(tmp_path):
    """What a user's bash does: source the generated function, then call it on a typed line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "vfiokit"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m vfiokit "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(SRC)}
    script = subprocess.run(["vfiokit"], env={**env, "_VFIOKIT_COMPLETE": "bash_source"},
                            capture_output=True, text=True, check=True).stdout
    assert "complete -o nosort -F _vfiokit_completion vfiokit" in script
    line = f"vfiokit check --sample {B550} 04:"
    words = line.split(" ")
    probe = (f'{script}\nCOMP_WORDS=({line})\nCOMP_CWORD={len(words) - 1}\n'
             '_vfiokit_completion\nprintf "%s\\n" "${COMPREPLY[@]}"\n')
    out = subprocess.run(["bash", "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["04:00.0", "04:00.1"]
