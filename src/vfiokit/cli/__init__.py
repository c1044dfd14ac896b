"""The `vfiokit` command: thin. It parses, calls sources and analyses, renders, picks the exit code.

Each command family lives in its own module and registers itself on `main`. Every failure that
reaches here as a `VfiokitError` is printed as one line `vfiokit: error: ...` and exits with its
`ExitCode`; anything else is a bug and is shown as such, still on one line.
"""

from __future__ import annotations

import sys

import click

from vfiokit import __version__
from vfiokit.errors import ExitCode, VfiokitError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vfiokit")
def main() -> None:
    """See, judge, predict and safely change IOMMU groups for PCI passthrough."""


def _register() -> None:
    from vfiokit.cli import attach, boot, check, cluster, compare, predict, see

    see.register(main)
    boot.register(main)
    attach.register(main)
    cluster.register(main)
    check.register(main)
    predict.register(main)
    compare.register(main)


_register()


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
