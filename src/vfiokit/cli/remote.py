"""What the commands that reach Proxmox share: the --host options, the API connection, a device argument."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from vfiokit.errors import BadInput
from vfiokit.model import PciAddress
from vfiokit.sources.proxmox_api import TOKEN_ENV, TOKEN_ID_ENV

if TYPE_CHECKING:
    from vfiokit.sources.proxmox_api import PveApi


def remote_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--host and what a remote call needs; the token secret only from the environment or a file."""

    @click.option("--host", default=None, help="A Proxmox VE node to reach through its API (HOST[:PORT]).")
    @click.option("--token-id", default=None, envvar=TOKEN_ID_ENV,
                  help=f"API token id, USER@REALM!NAME (or {TOKEN_ID_ENV}). The secret comes from "
                       f"{TOKEN_ENV} or --token-file, never from the command line.")
    @click.option("--token-file", type=click.Path(dir_okay=False), default=None,
                  help="File holding the API token secret.")
    @click.option("--ca-file", type=click.Path(dir_okay=False), default=None,
                  help="CA certificate to trust (a node's /etc/pve/pve-root-ca.pem).")
    @click.option("--insecure", is_flag=True, help="Do not verify the node's TLS certificate.")
    @click.option("--timeout", type=float, default=10.0, show_default=True,
                  help="Seconds to wait for each API answer.")
    @functools.wraps(f)
    def wrapper(*args: Any, host: str | None, token_id: str | None, token_file: str | None,
                ca_file: str | None, insecure: bool, timeout: float, **kwargs: Any) -> Any:
        kwargs["connect"] = None
        if host is not None:
            kwargs["connect"] = functools.partial(connect, host, token_id, token_file, ca_file, insecure,
                                                  timeout)
        elif token_id or token_file or ca_file or insecure:
            raise click.UsageError("--token-id, --token-file, --ca-file and --insecure need --host")
        return f(*args, **kwargs)

    return wrapper


def connect(host: str, token_id: str | None, token_file: str | None, ca_file: str | None, insecure: bool,
            timeout: float) -> PveApi:
    from vfiokit.sources.proxmox_api import Credentials, PveApi, read_secret

    if not token_id:
        raise BadInput(f"--host needs --token-id USER@REALM!NAME (or {TOKEN_ID_ENV})")
    verify: bool | str = False if insecure else (ca_file or True)
    if insecure:  # every time: a habit of --insecure is how a man in the middle gets the token
        click.echo(f"vfiokit: warning: --insecure: {host}'s TLS certificate is not checked; anyone between "
                   "here and it can read the API token (give --ca-file /etc/pve/pve-root-ca.pem instead)",
                   err=True)
    return PveApi(Credentials(host, token_id, read_secret(token_file), verify, timeout))


def parse_device(text: str) -> tuple[PciAddress, bool]:
    """`01:00.0` / `0000:01:00.0`, or a slot `01:00` (all functions, as Proxmox accepts it)."""
    t = text.strip().lower()
    if t.count(".") == 0 and t.count(":") in (1, 2):
        return PciAddress.parse(t + ".0"), True
    return PciAddress.parse(t), False
