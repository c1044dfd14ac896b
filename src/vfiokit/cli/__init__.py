"""The `vfiokit` command: thin. It parses, calls sources and analyses, renders, picks the exit code.

Each command family lives in its own module, named in `COMMANDS` and imported on first use. Every failure that
reaches here as a `VfiokitError` is printed as one line `vfiokit: error: ...` and exits with its
`ExitCode`; anything else is a bug and is shown as such, still on one line, with exit INTERNAL
(never 1, which is `compare`'s "the sources differ"). Every message has the API token secret
blanked out (`errors.scrub`).
"""

# ruff: noqa: E402 - the collector is set before the imports
from __future__ import annotations

import gc

# A command imports some 150 modules, builds one large model of acyclic objects and exits: the
# cyclic collector's default (a pass every 700 allocations, each full pass walking everything)
# took 3 ms of a 9-device `groups` in the imports alone, 8% of `groups` at 10,000 functions and
# 30% of `simulate` at 30,000. Set before the imports below; cycles are still collected, rarely.
gc.set_threshold(100_000, 50, 1000)

import contextlib
import importlib
import os
import sys
from typing import NoReturn

import click

from vfiokit import __version__
from vfiokit.cli.common import SuggestingGroup
from vfiokit.errors import ExitCode, VfiokitError, scrub


def _one_line(text: str) -> str:
    return " ".join(scrub(text).split())

#: Each command and the module that defines it. Modules are imported when their command runs (or
#: when help lists them): `vfiokit groups` should not pay for the Proxmox and boot code's imports.
COMMANDS = {
    "groups": "vfiokit.cli.see",
    "snapshot": "vfiokit.cli.see",
    "samples": "vfiokit.cli.see",
    "boards": "vfiokit.cli.boards",
    "check": "vfiokit.cli.check",
    "simulate": "vfiokit.cli.predict",
    "compare": "vfiokit.cli.compare",
    "report": "vfiokit.cli.report",
    "boot": "vfiokit.cli.boot",
    "attach": "vfiokit.cli.attach",
    "detach": "vfiokit.cli.attach",
    "bind": "vfiokit.cli.bind",
    "unbind": "vfiokit.cli.bind",
    "cluster": "vfiokit.cli.cluster",
    "doctor": "vfiokit.cli.doctor",
}


class _LazyGroup(SuggestingGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return getattr(importlib.import_module(COMMANDS[name]), name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vfiokit")
def main() -> None:
    """See, judge, predict and safely change IOMMU groups for PCI passthrough."""


def _fail(as_json: bool, code: ExitCode, message: str, hint: str | None = None,
          fields: dict[str, object] | None = None, word: str | None = "error") -> int:
    """Say a failure: one line on stderr (and a hint line); under --json also the error envelope on
    stdout, so a script never parses an empty output. Returns the exit code."""
    message = _one_line(message)
    hint = _one_line(hint) if hint else None
    if as_json:
        from vfiokit.render.envelope import error_envelope

        sys.stdout.write(error_envelope(int(code), code.name.lower(), message, hint, fields or {}))
    from vfiokit.cli.output import err_line

    err_line(f"vfiokit: {word}: {message}" if word else f"vfiokit: {message}")
    if hint:
        err_line(f"vfiokit: hint: {hint}")
    return int(code)


def _usage_hint(e: click.UsageError) -> str:
    """Where to read the right usage: the failing command's own --help."""
    path = e.ctx.command_path if e.ctx is not None else "vfiokit"
    return f"'{path} --help' shows the usage"


def _execute(argv: list[str] | None, as_json: bool) -> int:
    """Run `main` and turn every way it can end into an exit code (said on stderr, and as an error
    envelope under --json)."""
    try:
        main.main(args=argv, prog_name="vfiokit", standalone_mode=False)
    except click.exceptions.Abort:
        return _fail(as_json, ExitCode.ABORTED, "aborted", word=None)
    except click.UsageError as e:
        # click's own wording ("No such option: --jsn Did you mean --json?") in ours, exit 2.
        text = e.format_message().rstrip(".")
        return _fail(as_json, ExitCode.USAGE, text[:1].lower() + text[1:], _usage_hint(e))
    except click.ClickException as e:
        return _fail(as_json, ExitCode.BAD_INPUT, e.format_message())
    except VfiokitError as e:
        return _fail(as_json, e.code, str(e), e.hint, e.fields())
    except KeyboardInterrupt:
        return _fail(as_json, ExitCode.ABORTED, "interrupted", word=None)
    except BrokenPipeError:
        # A write that bypassed the quiet stdout (see output.quiet_broken_pipe): the reader is gone.
        return int(ExitCode.OK)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else int(ExitCode.OK)
    except Exception as e:  # the last resort: a bug, said in one line, never a traceback
        where = ""
        tb = e.__traceback__
        while tb is not None:
            where = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
            tb = tb.tb_next
        return _fail(as_json, ExitCode.INTERNAL,
                     f"{type(e).__name__}: {_one_line(str(e))[:300]}{where} (a bug in vfiokit {__version__}; "
                     "please report it with this line and the command you ran)", word="internal error")
    return int(ExitCode.OK)


def run(argv: list[str] | None = None) -> None:
    """Console entry point: run `main`, turning our errors into one line and an exit code.

    A reader that stops early (`vfiokit check ... | head -1`) closes the pipe: the rest of the output
    is dropped quietly and the exit code is still the command's own (the verdict's)."""
    from vfiokit.cli.output import quiet_broken_pipe

    as_json = "--json" in (sys.argv[1:] if argv is None else argv)
    with quiet_broken_pipe():
        code = _execute(argv, as_json)
    if argv is None:  # the process's entry point (a test calls run with its arguments)
        _end_process(code)
    sys.exit(code)


def _end_process(code: int) -> NoReturn:
    """End the process now, its output flushed. The interpreter's own exit would free the model
    object by object and finalize every module: 6 ms of a 9-device `groups` (a tenth of it), more
    at 10,000 functions, for nothing a command leaves behind. Every file a command writes is
    closed and renamed before it returns (edits/atomic.py), its threads are joined (cluster
    inventory's pool), and neither vfiokit nor click, rich or proxmoxer registers an exit handler."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
