"""The `vfiokit` command: thin. It parses, calls sources and analyses, renders, picks the exit code.

Each command family lives in its own module, named in `COMMANDS` and imported on first use. Every failure that
reaches here as a `VfiokitError` is printed as one line `vfiokit: error: ...` and exits with its
`ExitCode`; anything else is a bug and is shown as such, still on one line.
"""

from __future__ import annotations

import importlib
import sys

import click

from vfiokit import __version__
from vfiokit.errors import ExitCode, VfiokitError

#: Each command and the module that defines it. Modules are imported when their command runs (or
#: when help lists them): `vfiokit groups` should not pay for the Proxmox and boot code's imports.
COMMANDS = {
    "groups": "vfiokit.cli.see",
    "snapshot": "vfiokit.cli.see",
    "samples": "vfiokit.cli.see",
    "check": "vfiokit.cli.check",
    "simulate": "vfiokit.cli.predict",
    "compare": "vfiokit.cli.compare",
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
        click.echo(f"vfiokit: error: {e}", err=True)
        if e.hint:
            click.echo(f"vfiokit: hint: {e.hint}", err=True)
        sys.exit(e.code)
    except BrokenPipeError:
        sys.exit(ExitCode.OK)
    except KeyboardInterrupt:
        click.echo("vfiokit: interrupted", err=True)
        sys.exit(ExitCode.ABORTED)
    sys.exit(ExitCode.OK)
