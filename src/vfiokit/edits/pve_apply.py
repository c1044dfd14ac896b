"""Apply a VM config plan the way Proxmox wants it: `qm set` on the node, or a PUT through the API.

Never a write to `/etc/pve` behind pmxcfs' back: `qm set` and the API lock the config, check it,
and keep the cluster file system consistent. That is why these edits do not go through the file
writer (`edits/writer.py`): pmxcfs is not a file system to rename temp files into, and Proxmox's own
lock and digest play the writer's lock-and-reread role. Both carry the `digest` of the config vfiokit read, so
an edit made meanwhile (GUI, another admin, a script) makes Proxmox refuse ours (qemu-server
update_vm_api: "checksum mismatch (file change by other user?)"), reported as CONFLICT.
"""

from __future__ import annotations

import subprocess
from typing import Any, Protocol

from vfiokit.errors import Conflict, ExitCode, VfiokitError
from vfiokit.formats.pve_config import CONFLICT_MARKS

# Edits import neither analyses nor sources: what they take is described here by shape
# (`analyses.vm_attach.AttachPlan`, `sources.pve_local.LocalPve`, `sources.proxmox_api.PveApi` fit).


class ConfigChange(Protocol):
    """One option of one VM config to set (`value`) or delete (`value` None)."""

    vmid: str
    key: str
    value: str | None


class QmRunner(Protocol):
    def run_qm(self, *args: str) -> subprocess.CompletedProcess[str]: ...


class ApiCaller(Protocol):
    def call(self, method: str, path: str, **params: Any) -> Any: ...


def qm_args(plan: ConfigChange, digest: str) -> list[str]:
    """The `qm set` command line for `plan` (digest: SHA1 of the config file that was read)."""
    change = ["--delete", plan.key] if plan.value is None else [f"--{plan.key}", plan.value]
    return ["set", plan.vmid, *change, "--digest", digest]


def apply_local(node: QmRunner, plan: ConfigChange, digest: str) -> None:
    r = node.run_qm(*qm_args(plan, digest))
    if r.returncode != 0:
        text = (r.stderr or r.stdout).strip().splitlines()
        msg = text[-1] if text else f"exit {r.returncode}"
        if any(mark in msg for mark in CONFLICT_MARKS):
            raise Conflict(f"qm set {plan.vmid}: {msg}: the config changed since vfiokit read it; nothing "
                           "was written", hint="run the command again to see the new config")
        raise VfiokitError(f"qm set {plan.vmid}: {msg}", ExitCode.WRITE_FAILED)


def apply_remote(api: ApiCaller, node: str, plan: ConfigChange, digest: str) -> None:
    change = {"delete": plan.key} if plan.value is None else {plan.key: plan.value}
    # PUT is synchronous (POST would return a task): the answer says whether it was written.
    api.call("PUT", f"/nodes/{node}/qemu/{plan.vmid}/config", digest=digest, **change)


def apply_mapping(api: ApiCaller, name: str, params: dict[str, Any], digest: str | None, new: bool) -> None:
    """Create (POST) or update (PUT, carrying the `digest` read, so a change meanwhile is refused)
    cluster PCI mapping `name`; `params` hold `map` and maybe `description`."""
    if new:
        api.call("POST", "/cluster/mapping/pci", id=name, **params)
    else:
        api.call("PUT", f"/cluster/mapping/pci/{name}", digest=digest, **params)
