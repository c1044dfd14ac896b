"""Apply a VM config plan the way Proxmox wants it: `qm set` on the node, or a PUT through the API.

Never a write to `/etc/pve` behind pmxcfs' back: `qm set` and the API lock the config, check it,
and keep the cluster file system consistent. That is why these edits do not go through the file
writer (`edits/writer.py`): pmxcfs is not a file system to rename temp files into, and Proxmox's own
lock and digest play the writer's lock-and-reread role. Both carry the `digest` of the config vfiokit read, so
an edit made meanwhile (GUI, another admin, a script) makes Proxmox refuse ours (qemu-server
update_vm_api: "checksum mismatch (file change by other user?)"), reported as CONFLICT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vfiokit.analyses.vm_attach import Plan
from vfiokit.errors import Conflict, ExitCode, VfiokitError

#: What qemu-server says when a config changed under a digest (older and newer wordings).
CONFLICT_MARKS = ("checksum mismatch", "detected modified configuration")

if TYPE_CHECKING:  # edits never import a source to run; these are only the callers' handles
    from vfiokit.sources.proxmox_api import PveApi
    from vfiokit.sources.pve_local import LocalPve


def qm_args(plan: Plan, digest: str) -> list[str]:
    """The `qm set` command line for `plan` (digest: SHA1 of the config file that was read)."""
    change = ["--delete", plan.key] if plan.value is None else [f"--{plan.key}", plan.value]
    return ["set", plan.vmid, *change, "--digest", digest]


def apply_local(node: LocalPve, plan: Plan, digest: str) -> None:
    r = node.run_qm(*qm_args(plan, digest))
    if r.returncode != 0:
        text = (r.stderr or r.stdout).strip().splitlines()
        msg = text[-1] if text else f"exit {r.returncode}"
        if any(mark in msg for mark in CONFLICT_MARKS):
            raise Conflict(f"qm set {plan.vmid}: {msg}: the config changed since vfiokit read it; nothing "
                           "was written", hint="run the command again to see the new config")
        raise VfiokitError(f"qm set {plan.vmid}: {msg}", ExitCode.WRITE_FAILED)


def apply_remote(api: PveApi, node: str, plan: Plan, digest: str) -> None:
    change = {"delete": plan.key} if plan.value is None else {plan.key: plan.value}
    # PUT is synchronous (POST would return a task): the answer says whether it was written.
    api.call("PUT", f"/nodes/{node}/qemu/{plan.vmid}/config", digest=digest, **change)


def apply_mapping(api: PveApi, name: str, params: dict[str, Any], digest: str | None, new: bool) -> None:
    """Create (POST) or update (PUT, carrying the `digest` read, so a change meanwhile is refused)
    cluster PCI mapping `name`; `params` hold `map` and maybe `description`."""
    if new:
        api.call("POST", "/cluster/mapping/pci", id=name, **params)
    else:
        api.call("PUT", f"/cluster/mapping/pci/{name}", digest=digest, **params)
