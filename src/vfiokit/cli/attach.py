"""`vfiokit attach` / `vfiokit detach`: give a PCI device to a Proxmox VM, or take it back.

Local mode (on the node) reads `/etc/pve` and writes with `qm set`; remote mode (`--host`) does both
through the API. Either way: the device is judged first (`check`), the VM side is checked, the change
is shown as a diff, `--dry-run` stops there, and the write carries the config's digest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from vfiokit.analyses.attach_gate import token_refusal
from vfiokit.analyses.vm_attach import AttachPlan, AttachRequest, plan_attach, plan_detach
from vfiokit.cli import completion
from vfiokit.cli.confirm import confirm_and_apply
from vfiokit.cli.output import note, print_lines
from vfiokit.cli.remote import parse_device, remote_options
from vfiokit.errors import BadInput, Refused
from vfiokit.formats import pve_config as pc
from vfiokit.formats import pve_hostpci as hostpci
from vfiokit.formats import pve_mapping
from vfiokit.model import Topology
from vfiokit.render import attach as render_attach

if TYPE_CHECKING:
    from vfiokit.sources.proxmox_api import PveApi


@dataclass
class Target:
    """Where the VM lives and how to read and write it (this node, or a node through the API)."""

    where: str
    config: Callable[[str], tuple[pc.VmConfig, str]]
    running: Callable[[str], bool]
    others: Callable[[], dict[str, pc.VmConfig]]
    mapping_paths: Callable[[], dict[str, list[str]]]
    topology: Callable[[], Topology]
    apply: Callable[[AttachPlan, str], None]
    remote: bool


def local_target(root: str, qm: str = "qm") -> Target:
    from vfiokit.edits.pve_apply import apply_local
    from vfiokit.sources import sysfs
    from vfiokit.sources.pve_local import LocalPve

    node = LocalPve(root, qm)

    def config(vmid: str) -> tuple[pc.VmConfig, str]:
        conf = node.config(vmid)
        return conf, conf.digest

    return Target("this node", config, node.running, node.configs, node.mapping_paths,
                  lambda: sysfs.read_topology(root), lambda plan, d: apply_local(node, plan, d), False)


def remote_target(api: PveApi, vmid: str, node: str | None) -> Target:
    from vfiokit.edits.pve_apply import apply_remote
    from vfiokit.sources.proxmox_api import topology_from_pci

    node = node or api.vm_node(vmid)

    def mapping_paths() -> dict[str, list[str]]:
        return pve_mapping.paths_on_node({k: list(v.get("map", [])) for k, v in api.mappings().items()}, node)

    return Target(f"node {node} via {api.host}", lambda v: api.vm_config(node, v),
                  lambda v: api.running(node, v), lambda: api.node_configs(node), mapping_paths,
                  lambda: topology_from_pci(api.node_pci(node), node, api.host),
                  lambda plan, d: apply_remote(api, node, plan, d), True)


def show_plan(plan: AttachPlan) -> None:
    """The change as a unified diff of the VM config (coloured on a terminal), then the notes."""
    lines = []
    # lines end at "\n" only, as in the file (str.splitlines would also cut at \x0c or drop a \r)
    for ln in plan.diff(f"qemu-server/{plan.vmid}.conf").split("\n")[:-1]:
        style = None
        if ln.startswith("+") and not ln.startswith("+++"):
            style = "green"
        elif ln.startswith("-") and not ln.startswith("---"):
            style = "red"
        elif ln.startswith("@@"):
            style = "dim"
        lines.append([(ln, style)])
    print_lines(lines)
    for n in plan.notes:
        note(n)


def _gate(top: Topology, functions: list[str], force: bool, accept_siblings: bool) -> None:
    """The `check` verdict gate (analyses/attach_gate.py): say it, then refuse or go on."""
    from vfiokit.analyses.attach_gate import gate
    from vfiokit.render.attach import gate_accepted, gate_notes, gate_refusal

    g = gate(top, functions, force, accept_siblings)
    for n in gate_notes(g):
        note(n)
    if g.refused:
        message, hint = gate_refusal(g)
        raise Refused(message, hint=hint)
    if g.code is not None:
        note(gate_accepted(g))


def _write(plan: AttachPlan, target: Target, digest: str, dry_run: bool, yes: bool, question: str, done: str,
           when_pending: str) -> None:
    """After the plan was shown: stop (dry run), ask unless --yes, apply with the digest, say so."""
    if not confirm_and_apply(dry_run, yes, f"{question}?", lambda: target.apply(plan, digest)):
        return
    click.echo(f"vfiokit: VM {plan.vmid}: {done}" + (f" (pending: {when_pending})" if plan.pending else ""),
               err=True)


def _target(connect: Callable[[], Any] | None, vmid: str, node: str | None, root: str | None) -> Target:
    if connect is None:
        if node is not None:
            raise click.UsageError("--node needs --host (locally the VM is on this node)")
        return local_target(root or "/")
    if root is not None:
        raise click.UsageError("--root is for local mode; remove it or --host")
    if node is not None:
        pc.check_plain(node, "--node")
    return remote_target(connect(), vmid, node)


def _vmid(vmid: str) -> str:
    if not (vmid.isascii() and vmid.isdigit()) or not 100 <= int(vmid) <= 999999999:  # not "²" or "１００"
        raise BadInput(f"{vmid!r} is not a VM id (a number from 100 to 999999999)")
    return vmid


common = [
    click.option("--node", default=None, help="With --host: the VM's node (default: found in the cluster)."),
    click.option("--root", type=click.Path(file_okay=False), default=None,
                 help="Local mode: read the node below this folder instead of / (tests)."),
    click.option("--dry-run", is_flag=True, help="Show the change and stop."),
    click.option("-y", "--yes", is_flag=True, help="Do not ask before writing."),
]


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(common):
        f = opt(f)
    return remote_options(f)


@click.command()
@click.argument("vmid", shell_complete=completion.vmids)
@click.argument("device", required=False, shell_complete=completion.addresses)
@click.option("--mapping", default=None, help="Use a cluster PCI mapping (hostpciN: mapping=NAME).")
@click.option("--pcie", is_flag=True, help="Pass as PCIe (needs the q35 machine).")
@click.option("--primary-gpu", is_flag=True, help="Make it the VM's primary GPU (x-vga=1).")
@click.option("--all-functions", is_flag=True, help="All functions of the slot (like 01:00).")
@click.option("--rombar", type=click.Choice(["0", "1"]), default=None,
              help="Show the device ROM to the guest (1) or hide it (0).")
@click.option("--romfile", default=None, help="ROM file under /usr/share/kvm/.")
@click.option("--force", is_flag=True, help="Proceed although check says unsafe, or another VM has it.")
@click.option("--accept-siblings", is_flag=True, help="Accept that the group's other devices leave the host.")
@_common
def attach(vmid: str, device: str | None, mapping: str | None, pcie: bool, primary_gpu: bool,
           all_functions: bool, rombar: str | None, romfile: str | None, force: bool, accept_siblings: bool,
           node: str | None, root: str | None, dry_run: bool, yes: bool, connect: Any) -> None:
    """Give PCI DEVICE (or --mapping NAME) to Proxmox VM VMID as the first free hostpciN."""
    vmid = _vmid(vmid)
    if (device is None) == (mapping is None):
        raise click.UsageError("give either DEVICE or --mapping NAME")
    addr = None
    if device is not None:
        addr, slot = parse_device(device)
        all_functions = all_functions or slot
    target = _target(connect, vmid, node, root)
    conf, digest = target.config(vmid)
    running = target.running(vmid)
    top = target.topology()
    req = AttachRequest(vmid, addr, mapping, pcie, primary_gpu, all_functions,
                        None if rombar is None else rombar == "1", romfile, force)
    plan = plan_attach(req, conf, running, top, target.others(), target.mapping_paths())
    click.echo(f"VM {vmid} on {target.where}: {plan.key}: {plan.value}", err=True)
    show_plan(plan)
    if plan.functions:
        if top.groups is None:
            note(f"{top.source}: no IOMMU groups: Proxmox refuses to start the VM "
                 "('cannot prepare PCI pass-through, IOMMU not present')")
        else:
            _gate(top, plan.functions, force, accept_siblings)
    if token_refusal(target.remote, addr is not None):
        message, hint = render_attach.token_refusal(plan.key, vmid, device or "")
        if not dry_run:
            raise Refused(message, hint=hint)
        note(f"the write would be refused: {message}")
    _write(plan, target, digest, dry_run, yes, f"Write {plan.key} to VM {vmid}",
           f"{plan.key} set", "applies at the next start")


@click.command()
@click.argument("vmid", shell_complete=completion.vmids)
@click.argument("device", shell_complete=completion.addresses)
@_common
def detach(vmid: str, device: str, node: str | None, root: str | None, dry_run: bool, yes: bool,
           connect: Any) -> None:
    """Take PCI DEVICE (an address, a slot, a hostpciN key or a mapping name) back from VM VMID."""
    vmid = _vmid(vmid)
    target = _target(connect, vmid, node, root)
    conf, digest = target.config(vmid)
    running = target.running(vmid)
    key = device if device in hostpci.HOSTPCI_KEYS else None
    if key is None and device.startswith("hostpci") and device[7:].isascii() and device[7:].isdigit():
        raise BadInput(f"'{device}' is not a hostpci key (hostpci0..hostpci{hostpci.MAX_HOSTPCI - 1})")
    addr = mapping = None
    slot = False
    if key is None:
        try:
            addr, slot = parse_device(device)
        except BadInput:
            if not hostpci.CONFIGID_RE.match(device):
                raise BadInput(f"'{device}' is neither a PCI address, a hostpciN key nor a mapping name") \
                    from None
            mapping = device
    plan = plan_detach(vmid, conf, running, addr, key, mapping, target.mapping_paths(), slot)
    if plan.new_text == plan.old_text:
        for n in plan.notes:
            note(n)
        click.echo(f"vfiokit: nothing to change: VM {vmid} {plan.key}", err=True)
        return
    click.echo(f"VM {vmid} on {target.where}: remove {plan.key}", err=True)
    show_plan(plan)
    _write(plan, target, digest, dry_run, yes, f"Remove {plan.key} from VM {vmid}",
           f"{plan.key} removed", "the device stays until the next start")
