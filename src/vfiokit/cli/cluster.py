"""`vfiokit cluster inventory` and `vfiokit cluster map`: a Proxmox cluster's PCI devices, through its API."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from vfiokit.cli.confirm import confirm_and_apply
from vfiokit.cli.output import note, print_lines
from vfiokit.cli.remote import parse_device, remote_options
from vfiokit.errors import BadInput, ExitCode

if TYPE_CHECKING:
    from vfiokit.analyses.cluster_mapping import MapEntry


@click.group()
def cluster() -> None:
    """A Proxmox VE cluster through its API: every node's devices, cluster PCI mappings."""


def _api(connect: Any):
    if connect is None:
        raise click.UsageError("--host is required (a node of the cluster)")
    return connect()


@cluster.command()
@click.option("--node", "only", multiple=True, help="Only this node (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (versioned envelope).")
@remote_options
def inventory(only: tuple[str, ...], as_json: bool, connect: Any) -> None:
    """Every node's PCI devices and IOMMU groups, shown like 'vfiokit groups'."""
    from rich.progress import BarColumn, Progress, TextColumn

    from vfiokit.formats.pve_hostpci import check_plain
    from vfiokit.pciids import PciIds
    from vfiokit.render.check import check_marker
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

        body = {"nodes": [{"node": r.node, **groups_json(r.topology, ids, check_marker(r.topology)),
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
                print_lines(groups_text(top, ids, check_marker(top)))
        if results and results[0].topology is not None:
            note(results[0].topology.notes[0])
    for r in failed:
        click.echo(f"vfiokit: error: node {r.node}: {r.error}", err=True)
    if failed and len(failed) == len(results):
        sys.exit(ExitCode.REMOTE)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _entry_for(api: Any, spec: str) -> MapEntry:
    """`DEVICE@NODE` -> its `map` entry, from the node's /hardware/pci."""
    from vfiokit.analyses.cluster_mapping import map_entry
    from vfiokit.sources.proxmox_api import topology_from_pci

    dev_text, at, node = spec.rpartition("@")
    if not at or not dev_text or not node:
        raise BadInput(f"'{spec}': expected DEVICE@NODE (e.g. 01:00.0@pve1, or 01:00@pve1 for all functions)")
    from vfiokit.formats.pve_hostpci import check_plain

    check_plain(node, "node")
    addr, whole_slot = parse_device(dev_text)
    return map_entry(spec, node, topology_from_pci(api.node_pci(node), node, api.host), addr, whole_slot)


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
    from vfiokit.analyses.cluster_mapping import check_name, plan_mapping
    from vfiokit.edits.pve_apply import apply_mapping
    from vfiokit.formats.pve_hostpci import check_plain

    check_name(name)
    if description is not None:
        check_plain(description, "--description")
    api = _api(connect)
    entries = [_entry_for(api, spec) for spec in devices]
    existing = api.mappings().get(name)
    plan = plan_mapping(name, entries, existing, description)
    click.echo(f"mapping '{name}' ({'new' if existing is None else 'update'}) at {api.host}:", err=True)
    lines = [[(f"- map {e}", "red")] for e in plan.old if e not in plan.final]
    lines += [[(f"  map {e}", None)] for e in plan.final if e in plan.old]
    lines += [[(f"+ map {e}", "green")] for e in plan.final if e not in plan.old]
    print_lines(lines)
    if plan.empty:
        note("nothing to change")
        return
    digest = None if existing is None else existing.get("digest")
    if not confirm_and_apply(dry_run, yes, f"Write mapping '{name}'?",
                             lambda: apply_mapping(api, name, plan.params(), digest, existing is None)):
        return
    click.echo(f"vfiokit: mapping '{name}' written; use it with 'vfiokit attach VMID --mapping {name}'", err=True)
