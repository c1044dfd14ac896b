"""The man pages are generated from the CLI's own help (scripts/gen_docs.py), so every command has
one and every option `--help` lists is in it; groff (the real formatter) reads them without a
warning."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess

import click
import pytest
from scripts.gen_docs import man_pages, roff

from vfiokit.cli import COMMANDS, main


def test_one_page_per_command_and_the_main_page():
    assert set(man_pages()) == {"vfiokit.1", *(f"vfiokit-{c}.1" for c in COMMANDS)}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_of_the_command_is_on_its_page(name):
    page = man_pages()[f"vfiokit-{name}.1"]
    ctx = click.Context(main, info_name="vfiokit")
    cmd = main.get_command(ctx, name)
    commands = [cmd, *(cmd.commands.values() if isinstance(cmd, click.Group) else [])]
    for c in commands:
        for param in c.params:
            for opt in getattr(param, "opts", []) if isinstance(param, click.Option) else []:
                assert roff(opt) in page, (name, c.name, opt)
    assert roff(cmd.get_short_help_str(limit=200)) in page


def test_the_main_page_lists_every_command_and_exit_code():
    page = man_pages()["vfiokit.1"]
    for c in COMMANDS:
        assert f"\\fB{roff(c)}\\fR" in page and f".BR vfiokit\\-{roff(c)} (1)" in page
    assert ".SH EXIT STATUS" in page and "\\fB13\\fR" in page


@pytest.mark.skipif(shutil.which("man") is None, reason="man-db is not installed")
def test_man_formats_every_page_without_a_warning(tmp_path):
    for name, text in man_pages().items():
        path = tmp_path / f"{name}.gz"
        path.write_bytes(gzip.compress(text.encode()))
        r = subprocess.run(["man", "--warnings", "-l", "-Tutf8", "-E", "UTF-8", str(path)],
                           capture_output=True, text=True, env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
        assert r.returncode == 0 and r.stderr == "", (name, r.stderr)
        shown = re.sub(".\x08", "", r.stdout)  # without the overstrike that makes bold
        assert shown.split("\n")[0].startswith(name[:-2].upper())
        assert "SYNOPSIS" in shown
