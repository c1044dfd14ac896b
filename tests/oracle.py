"""Oracles: the real tools our output must agree with, run against a tree on disk."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

# The article's script, verbatim from the seed text (tabs included); only the folder it lists is
# made a variable so it can run against a materialized tree instead of the real /sys.
ARTICLE_SCRIPT = """\
#!/bin/bash
shopt -s nullglob
for iommu_group in $(ls -v $SYS/kernel/iommu_groups)
\tdo echo "IOMMU Group $iommu_group"
    for device in $SYS/kernel/iommu_groups/$iommu_group/devices/*
    \tdo echo -n $'\\t'
        lspci -s "${device##*/}" "$@"
    done
 done
"""


def lspci_args(tree: Path) -> list[str]:
    """Point lspci at a materialized tree, with names from pci.ids only (no udev hwdb)."""
    return ["-A", "linux-sysfs", "-O", f"sysfs.path={tree}/sys/bus/pci", "-O", "hwdb.disable=1"]


def need_lspci() -> None:
    if shutil.which("lspci") is None:
        pytest.fail("lspci is not installed (Debian package pciutils; scripts/setup-debian.sh installs it)")


def article_script(tree: Path) -> str:
    """What the article's script prints for the machine laid out below `tree`."""
    need_lspci()
    script = tree.parent / "article.sh"
    script.write_text(ARTICLE_SCRIPT)
    res = subprocess.run(["bash", str(script), *lspci_args(tree)], env={"SYS": f"{tree}/sys",
                         "PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LC_ALL": "C"},
                         capture_output=True, text=True, check=True)
    return res.stdout


def lspci(tree: Path, *args: str) -> str:
    need_lspci()
    res = subprocess.run(["lspci", *lspci_args(tree), *args], capture_output=True, text=True, check=True)
    return res.stdout
