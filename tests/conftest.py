"""Shared test helpers: run the CLI in-process and build small machines on disk."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

import pytest

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
