"""Proxmox-side policy before `attach` writes: the `check` verdict gate and the API-token rule.

Pure: a verdict (or the mode of the write) in, a decision with its reason code out; the CLI words
it (`render/attach.py`) and refuses or goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

from vfiokit.analyses import passthrough
from vfiokit.analyses.passthrough import Level, Verdict
from vfiokit.model import PciAddress, Topology

#: Reason codes of a gate decision.
UNSAFE = "unsafe"
COSTLY = "costly"
TOKEN_RAW_DEVICE = "token-raw-device"

#: The flag that overrides each gated level.
OVERRIDE = {UNSAFE: "--force", COSTLY: "--accept-siblings"}


@dataclass(frozen=True)
class Gate:
    """What the `check` verdict means for the write: `code` is None when nothing needs accepting."""

    verdict: Verdict
    code: str | None
    accepted: bool

    @property
    def refused(self) -> bool:
        return self.code is not None and not self.accepted

    @property
    def serious(self) -> list[passthrough.Reason]:
        """The reasons behind a gated verdict: what breaks (unsafe) or what leaves the host (costly)."""
        return [r for r in self.verdict.reasons if r.level >= Level.COSTLY]


def gate(top: Topology, functions: list[str], force: bool, accept_siblings: bool) -> Gate:
    """Judge what the passthrough takes from the host (`vfiokit check`).

    Unsafe (the host cannot live without a member) is accepted only with --force; costly (other
    devices leave the host) only with --accept-siblings.
    """
    verdict = passthrough.judge(top, [PciAddress.parse(f) for f in functions])
    if verdict.level == Level.UNSAFE:
        return Gate(verdict, UNSAFE, force)
    if verdict.level == Level.COSTLY:
        return Gate(verdict, COSTLY, accept_siblings)
    return Gate(verdict, None, True)


def token_gate(remote: bool, raw_device: bool) -> str | None:
    """TOKEN_RAW_DEVICE when the write would be refused by Proxmox, else None.

    qemu-server `check_hostpci_perm`: only root@pam (a password login, not a token) sets a raw host
    id; an API token needs a mapping and Mapping.Use on it.
    """
    return TOKEN_RAW_DEVICE if remote and raw_device else None
