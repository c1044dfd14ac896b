"""Oracles: the real tools our output must agree with, run against a tree on disk."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from oracles.article import ARTICLE_SCRIPT, lspci_args


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
