"""`vfiokit cluster inventory` and `vfiokit cluster map`: a Proxmox cluster's PCI devices, through its API."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from vfiokit.analyses import passthrough
from vfiokit.cli.attach import parse_device, remote_options
from vfiokit.cli.output import note, print_lines
from vfiokit.errors import BadInput, DeviceNotFound, ExitCode, Refused, VfiokitError
from vfiokit.model import Device, Topology


@click.group()
def cluster() -> None:
    """A Proxmox VE cluster through its API: every node's devices, cluster PCI mappings."""


def _api(connect: Any):
    if connect is None:
        raise click.UsageError("--host is required (a node of the cluster)")
    return connect()


def _marker(top: Topology) -> Callable[[Device], list[str]]:
    """A `check` verdict per device."""

    def mark(dev: Device) -> list[str]:
        if dev.is_bridge or dev.iommu_group is None:
            return []
        try:
            return [f"check: {passthrough.judge(top, [dev.address]).level.name.lower()}"]
        except VfiokitError:
            return []

    return mark


@cluster.command()
@click.option("--node", "only", multiple=True, help="Only this node (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (versioned envelope).")
@remote_options
def inventory(only: tuple[str, ...], as_json: bool, connect: Any) -> None:
    """Every node's PCI devices and IOMMU groups, shown like 'vfiokit groups'."""
    from rich.progress import BarColumn, Progress, TextColumn

    from vfiokit.edits.pve_config import check_plain
    from vfiokit.pciids import PciIds
    from vfiokit.render.groups import groups_json, groups_text
    from vfiokit.sources.proxmox_api import inventory as ask

    nodes = [check_plain(n, "--node") for n in only]
    api = _api(connect)
    nodes = nodes or [str(n["node"]) for n in api.nodes()]
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        transient=True, console=_stderr_console())
    with progress:
        task = progress.add_task(f"asking {len(nodes)} node(s) for their PCI devices", total=len(nodes))

        def done(node: str, result: Any) -> None:
            progress.update(task, advance=1, description=f"{node}: {'failed' if result.error else 'answered'}")

        results = ask(api, nodes, done)
    ids = PciIds.system()
    failed = [r for r in results if r.error is not None]
    if as_json:
        from vfiokit.render.envelope import envelope

        body = {"nodes": [{"node": r.node, **groups_json(r.topology, ids, _marker(r.topology)),
                           "iommu": r.topology.groups is not None}
                          for r in results if r.topology is not None],
                "failed": [{"node": r.node, "error": str(r.error)} for r in failed]}
        sys.stdout.write(envelope("cluster-inventory", api.host, [], **body))
    else:
        for r in results:
            if r.topology is None:
                continue
            top = r.topology
            print_lines([[(f"Node {r.node}", "bold underline")]])
            if top.groups is None:
                print_lines([[("  no IOMMU groups", "red"), (" (every device has iommugroup -1)", None)]])
            else:
                print_lines(groups_text(top, ids, _marker(top)))
        if results and results[0].topology is not None:
            note(results[0].topology.notes[0])
    for r in failed:
        click.echo(f"vfiokit: error: node {r.node}: {r.error}", err=True)
    if failed and len(failed) == len(results):
        sys.exit(ExitCode.REMOTE)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _entry_for(api: Any, spec: str) -> tuple[str, dict[str, str], Device]:
    """`DEVICE@NODE` -> (node, map entry fields, the device) from the node's /hardware/pci."""
    from vfiokit.sources.proxmox_api import topology_from_pci

    dev_text, at, node = spec.rpartition("@")
    if not at or not dev_text or not node:
        raise BadInput(f"'{spec}': expected DEVICE@NODE (e.g. 01:00.0@pve1, or 01:00@pve1 for all functions)")
    from vfiokit.edits.pve_config import check_plain

    check_plain(node, "node")
    addr, whole_slot = parse_device(dev_text)
    top = topology_from_pci(api.node_pci(node), node, api.host)
    try:
        dev = top.device(addr)
    except DeviceNotFound:
        raise DeviceNotFound(f"no PCI device at {addr} on node {node}") from None
    if dev.ids is None:
        raise BadInput(f"{node}: {addr} has no vendor:device id in the API answer")
    # pve-guest-common Mapping/PCI.pm: a path without function maps the whole device and is
    # checked against the attributes of its function 0.
    fields = {"node": node, "path": addr.slot_id if whole_slot else str(addr), "id": dev.ids}
    if dev.subsystem_ids is not None:
        fields["subsystem-id"] = dev.subsystem_ids
    if dev.iommu_group is not None:
        fields["iommugroup"] = str(dev.iommu_group)
    return node, fields, dev


def _overlap(a: str, b: str) -> bool:
    """Whether two map paths (`DDDD:BB:DD` for a whole device, or `DDDD:BB:DD.F`) share a function;
    several entries of one node are alternatives (pve-guest-common Mapping/PCI.pm), never the same
    device again."""
    return a.split(".")[0] == b.split(".")[0] and ("." not in a or "." not in b or a == b)


@cluster.command("map")
@click.argument("name")
@click.argument("devices", nargs=-1, required=True)
@click.option("--description", default=None, help="Description of the mapping.")
@click.option("--dry-run", is_flag=True, help="Show the change and stop.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before writing.")
@remote_options
def map_(name: str, devices: tuple[str, ...], description: str | None, dry_run: bool, yes: bool,
         connect: Any) -> None:
    """Create or update cluster PCI mapping NAME from DEVICE@NODE... (the same card on each node)."""
    from vfiokit.edits.pve_config import CONFIGID_RE, check_plain, parse_map_entry

    if not CONFIGID_RE.match(name):
        raise BadInput(f"{name!r}: invalid configuration ID (a letter, then letters, digits, '-' or '_')")
    if description is not None:
        check_plain(description, "--description")
    api = _api(connect)
    entries = [_entry_for(api, spec) for spec in devices]
    for i, (node, fields, _) in enumerate(entries):
        for other_node, other, _ in entries[:i]:
            if other_node == node and _overlap(fields["path"], other["path"]):
                raise BadInput(f"'{devices[i]}': {fields['path']} on node {node} is already in {other['path']}: "
                               "one device named twice in one mapping")
    first_node, first, _ = entries[0]
    for node, fields, _ in entries[1:]:
        for key in ("id", "subsystem-id"):
            if fields.get(key) != first.get(key):
                raise Refused(f"the devices differ: {first['path']}@{first_node} has {key} "
                              f"{first.get(key, 'none')}, {fields['path']}@{node} has {fields.get(key, 'none')}",
                              hint="a mapping names the same card on every node; make one mapping per kind")
    new_entries = [",".join(f"{k}={v}" for k, v in fields.items()) for _, fields, _ in entries]
    existing = api.mappings().get(name)
    nodes = {node for node, _, _ in entries}
    if existing is None:
        old_entries: list[str] = []
        kept: list[str] = []
    else:
        old_entries = list(existing.get("map", []))
        kept = [e for e in old_entries if parse_map_entry(e).get("node") not in nodes]
    final = kept + new_entries
    click.echo(f"mapping '{name}' ({'new' if existing is None else 'update'}) at {api.host}:", err=True)
    lines = [[(f"- map {e}", "red")] for e in old_entries if e not in final]
    lines += [[(f"  map {e}", None)] for e in final if e in old_entries]
    lines += [[(f"+ map {e}", "green")] for e in final if e not in old_entries]
    print_lines(lines)
    if final == old_entries and (description is None or description == (existing or {}).get("description")):
        note("nothing to change")
        return
    if dry_run:
        note("dry run: nothing written")
        return
    if not yes and not click.confirm(f"Write mapping '{name}'?", default=False, err=True):
        raise VfiokitError("nothing changed", ExitCode.ABORTED)
    params: dict[str, Any] = {"map": final}
    if description is not None:
        params["description"] = description
    if existing is None:
        api.call("POST", "/cluster/mapping/pci", id=name, **params)
    else:
        api.call("PUT", f"/cluster/mapping/pci/{name}", digest=existing.get("digest"), **params)
    click.echo(f"vfiokit: mapping '{name}' written; use it with 'vfiokit attach VMID --mapping {name}'", err=True)
