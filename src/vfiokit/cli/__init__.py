"""The `vfiokit` command: thin. It parses, calls sources and analyses, renders, picks the exit code.

Each command family lives in its own module, named in `COMMANDS` and imported on first use. Every failure that
reaches here as a `VfiokitError` is printed as one line `vfiokit: error: ...` and exits with its
`ExitCode`; anything else is a bug and is shown as such, still on one line, with exit INTERNAL
(never 1, which is `compare`'s "the sources differ"). Every message has the API token secret
blanked out (`errors.scrub`).
"""

from __future__ import annotations

import importlib
import sys

import click

from vfiokit import __version__
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
    "cluster": "vfiokit.cli.cluster",
    "doctor": "vfiokit.cli.doctor",
}


class _LazyGroup(click.Group):
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


def run(argv: list[str] | None = None) -> None:
    """Console entry point: run `main`, turning our errors into one line and an exit code."""
    try:
        main.main(args=argv, prog_name="vfiokit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("vfiokit: aborted", err=True)
        sys.exit(ExitCode.ABORTED)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except VfiokitError as e:
        if "--json" in (sys.argv[1:] if argv is None else argv):
            from vfiokit.render.envelope import error_envelope

            sys.stdout.write(error_envelope(int(e.code), e.code.name.lower(), str(e), e.hint, e.fields()))
        click.echo(f"vfiokit: error: {_one_line(str(e))}", err=True)
        if e.hint:
            click.echo(f"vfiokit: hint: {_one_line(e.hint)}", err=True)
        sys.exit(e.code)
    except BrokenPipeError:
        sys.exit(ExitCode.OK)
    except KeyboardInterrupt:
        click.echo("vfiokit: interrupted", err=True)
        sys.exit(ExitCode.ABORTED)
    except Exception as e:  # the last resort: a bug, said in one line, never a traceback
        where = ""
        tb = e.__traceback__
        while tb is not None:
            where = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
            tb = tb.tb_next
        click.echo(f"vfiokit: internal error: {type(e).__name__}: {_one_line(str(e))[:300]}{where} "
                   f"(a bug in vfiokit {__version__}; please report it with this line and the command "
                   "you ran)", err=True)
        sys.exit(ExitCode.INTERNAL)
    sys.exit(ExitCode.OK)
