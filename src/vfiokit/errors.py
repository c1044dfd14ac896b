"""The project's own errors and the exit codes a script can rely on.

Every failure that reaches the user is a `VfiokitError`: one line of text naming the file, line or
device it failed on, and an `ExitCode`. OS errors are turned into these at the boundary (sources,
writer), so the CLI never shows a traceback.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes of the `vfiokit` command (documented in the README; never renumber)."""

    OK = 0
    #: `compare`: the two sources differ (as diff(1) does).
    DIFFERENT = 1
    #: click's own code for a bad command line (unknown option, missing argument).
    USAGE = 2
    #: A file, snapshot, listing or tree could not be read or is malformed.
    BAD_INPUT = 3
    #: The device named on the command line is not on this host / in this source (`boot undo`:
    #: nothing left to undo).
    NOT_FOUND = 4
    #: The host has no IOMMU groups (IOMMU off in firmware or kernel, or a VM without vIOMMU).
    NO_IOMMU = 5
    #: Permission denied (reading or writing needs root).
    PERMISSION = 6
    #: A write, refresh or remote call failed; nothing was changed (or it was rolled back).
    WRITE_FAILED = 7
    #: vfiokit refuses an unsafe change (say why, and the flag that overrides it, if any).
    REFUSED = 8
    #: The user answered "no" at a confirmation prompt.
    ABORTED = 9
    #: `check`: the host loses something it uses (other group members, or the device itself).
    #: `doctor`: at least one warning (passthrough works, at a cost or a risk).
    COSTLY = 10
    #: `check`: the device or a group member is something the host cannot live without.
    #: `doctor`: at least one failure (passthrough will not work, or hurts the host).
    UNSAFE = 11
    #: A concurrent edit was detected (a file or Proxmox config changed since it was read, or
    #: another vfiokit holds the writer's lock).
    CONFLICT = 12
    #: A remote Proxmox API call failed (unreachable, timed out, no rights, an answer that is not
    #: what the Proxmox API gives).
    REMOTE = 13
    #: A bug in vfiokit: an unexpected error, shown as one line with a request to report it.
    INTERNAL = 14
    #: `groups --predict`: the answer is unknown, the source holds no config space (a pasted
    #: listing, an API inventory), so no group can be predicted.
    UNKNOWN = 15


class VfiokitError(Exception):
    """An error the user sees as one line `vfiokit: error: <message>` with `code` as exit code."""

    code: ExitCode = ExitCode.BAD_INPUT

    def __init__(self, message: str, code: ExitCode | None = None, hint: str | None = None, *,
                 file: str | None = None, line: int | None = None, device: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.hint = hint
        #: The key it failed on, for a script (`--json` prints them in the error envelope).
        self.file = file
        self.line = line
        self.device = device

    def fields(self) -> dict[str, object]:
        """The keys it failed on that are known (file, line, device)."""
        return {k: v for k, v in (("file", self.file), ("line", self.line), ("device", self.device))
                if v is not None}


class BadInput(VfiokitError):
    """Malformed or unreadable input (snapshot, listing, sysfs tree, config file)."""

    code = ExitCode.BAD_INPUT


class DeviceNotFound(VfiokitError):
    """A device address that is not in the topology."""

    code = ExitCode.NOT_FOUND


class NoIommu(VfiokitError):
    """The source has no IOMMU groups."""

    code = ExitCode.NO_IOMMU


class Refused(VfiokitError):
    """vfiokit will not make an unsafe change; the message says why, the hint what overrides it."""

    code = ExitCode.REFUSED


class Conflict(VfiokitError):
    """Someone else changed the thing meanwhile (a Proxmox config digest that no longer matches)."""

    code = ExitCode.CONFLICT


class RemoteError(VfiokitError):
    """A Proxmox API call failed: unreachable, timed out, no rights, or an error answer."""

    code = ExitCode.REMOTE


#: Environment variables holding a secret: a child process (`qm`, `update-grub`) never gets them.
SECRET_ENVS = ("VFIOKIT_PVE_TOKEN",)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: ours without the secrets, plus `extra`."""
    import os

    return {**{k: v for k, v in os.environ.items() if k not in SECRET_ENVS}, **(extra or {})}


#: Secrets read this run (the API token): `scrub` blanks them out of any text shown to the user,
#: as a library error (requests, proxmoxer) may quote a header or a URL that carries one.
_SECRETS: set[str] = set()


def register_secret(secret: str) -> None:
    if secret:
        _SECRETS.add(secret)


def scrub(text: str) -> str:
    """`text` with every registered secret replaced by `***`."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
