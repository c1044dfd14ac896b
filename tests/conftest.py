"""Shared test helpers: run the CLI in-process and build small machines on disk."""

from __future__ import annotations

import io
import os
import shutil
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

import pytest

from tests.bootroot import Standins
from vfiokit.cli import run


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def cli(*args: str, stdin: str | None = None) -> CliResult:
    """Run `vfiokit ARGS...` in this process, as a user would, and return code and output."""
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                run(list(args))
            except SystemExit as e:
                code = int(e.code or 0)
    finally:
        sys.stdin = old_stdin
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def run_cli():
    return cli


def _in_ci() -> bool:
    return os.environ.get("CI") == "true"


def pytest_collection_modifyitems(config, items):
    """`VFIOKIT_SKIP_LAB=1` skips the QEMU lab tests on a developer's machine; never in CI."""
    if os.environ.get("VFIOKIT_SKIP_LAB") == "1" and not _in_ci():
        skip = pytest.mark.skip(reason="VFIOKIT_SKIP_LAB=1")
        for item in items:
            if "lab" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def lab_qemu() -> str:
    """The lab's emulator. Missing on a developer's machine: the lab tests skip; in CI: they fail."""
    path = shutil.which("qemu-system-x86_64")
    if path is None:
        msg = "qemu-system-x86_64 is not installed (bash scripts/setup-debian.sh installs it)"
        if _in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def standins(tmp_path, monkeypatch) -> Standins:
    """The refresh commands' stand-ins (`bootroot.Standins`), first on the PATH."""
    s = Standins(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{s.bin}:{os.environ['PATH']}")
    return s
