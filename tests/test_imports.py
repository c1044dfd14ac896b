"""What a command imports, counted in a fresh interpreter (never timed: the figures are in bench/).

Start-up is what a person feels most often (issue 19): a command that only reads must not load the
safe writer (its journal, atomic steps and plans), difflib (the writer's diffs, did-you-mean), hashlib
(the journal's digests) or tempfile; `--version` and `--help` do not load rich, and `--version` no
command module nor the model.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bootroot import grub_host
from vfiokit.sources import samples
from vfiokit.sources.tree import materialize

SRC = Path(__file__).resolve().parents[1] / "src"
WRITER = {"vfiokit.edits.writer", "vfiokit.edits.atomic", "vfiokit.edits.journal", "vfiokit.edits.write_plan"}
#: Standard modules a reading command never needs.
HEAVY = {"difflib", "hashlib", "tempfile"}


def imported(*args: str) -> set[str]:
    """The modules `python -m vfiokit ARGS` imports beyond what the bare interpreter does
    (`-X importtime` names each module as it is first imported, site's too)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}

    def names(*argv: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
        done = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True, text=True,
                              env=env, check=False, timeout=120)
        return {line.rpartition("|")[2].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")} - {"imported package"}, done

    bare, _ = names("-c", "pass")
    found, done = names("-m", "vfiokit", *args)
    assert done.returncode in (0, 10, 11), done.stderr[-2000:]
    assert "vfiokit.cli" in found, "the import log names nothing: -X importtime said nothing?"
    return found - bare


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A host tree with its boot configuration: `groups` then reads the drivers at the next boot."""
    root = tmp_path_factory.mktemp("host")
    materialize(samples.load_raw("asus-tuf-b550-plus"), root)
    grub_host(root, "proxmox8")
    return str(root)


@pytest.mark.parametrize("command", [
    ("groups", "--sample", "asus-tuf-b550-plus"),
    ("groups", "--root", "{host}"),
    ("check", "--sample", "asus-tuf-b550-plus", "gpu"),
    ("simulate", "--sample", "asus-tuf-b550-plus"),
    ("bind", "--status", "--root", "{host}"),
    ("boot", "status", "--root", "{host}"),
    ("doctor", "--root", "{host}"),
    # --output, not -o: click 8.2+ tries `-o` as a long option first, and its miss imports difflib
    ("report", "--sample", "asus-tuf-b550-plus", "--output", "-"),
    ("compare", "sample:asus-tuf-b550-plus", "sample:asus-tuf-b550-plus"),
    ("boards",),
    ("samples",),
])
def test_a_reading_command_imports_no_writer_nor_digests(command: tuple[str, ...], host: str) -> None:
    found = imported(*(a.format(host=host) for a in command))
    assert not found & (WRITER | HEAVY), sorted(found & (WRITER | HEAVY))


@pytest.mark.parametrize("command", [("--version",), ("groups", "--help"), ("--help",)])
def test_version_and_help_import_no_rich_nor_writer(command: tuple[str, ...]) -> None:
    found = imported(*command)
    assert not {m for m in found if m == "rich" or m.startswith("rich.")}, sorted(found)
    assert not found & (WRITER | HEAVY), sorted(found & (WRITER | HEAVY))


def test_version_imports_no_command_nor_the_model() -> None:
    found = imported("--version")
    assert not {m for m in found if m.startswith(("vfiokit.cli.", "vfiokit.model"))} - {
        "vfiokit.cli.common", "vfiokit.cli.completion", "vfiokit.cli.output"}, sorted(found)
