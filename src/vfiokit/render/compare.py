"""`vfiokit compare` rendered: a comparison as text (rich markup) or as the JSON document's keys."""

from __future__ import annotations

from typing import Any

from vfiokit.analyses.compare import Comparison
from vfiokit.model import Device, PciAddress, Topology
from vfiokit.pciids import PciIds, lspci_line


def _line(top: Topology, addr: PciAddress, ids: PciIds, was: dict[PciAddress, PciAddress] | None = None) -> str:
    dev = top.by_address.get(addr)
    text = lspci_line(dev, ids) if dev is not None else addr.short
    return f"{text} (was {was[addr].short})" if was and addr in was else text


def _addrs(addrs: tuple[PciAddress, ...], most: int = 0) -> str:
    if most and len(addrs) > most:
        return f"{len(addrs)} devices ({', '.join(a.short for a in addrs[:most])}, ...)"
    return ", ".join(a.short for a in addrs)


def compare_text(c: Comparison, ids: PciIds) -> list[str]:
    """Rich markup lines: one section per kind of change, each device named as lspci names it."""
    from rich.markup import escape

    a, b = c.a, c.b
    was = {m.new: m.old for m in c.moved}
    out = [f"[bold]A[/bold] {escape(a.source)}", f"[bold]B[/bold] {escape(b.source)}"]
    if c.ignored and not c.in_common:
        out.append("[yellow]no device in common[/yellow]: no device of A is in B (same address or moved, "
                   "same ids): there is nothing to compare")
    if c.identical:
        scope = "on the devices both show" if c.ignored else ""
        out.append(f"[green]identical[/green]: same devices, same addresses, same groups {scope}".rstrip())
    for s in c.splits:
        out.append(f"[yellow]split[/yellow]: group {s.group} of A is now {len(s.parts)} groups in B")
        for part in s.parts:
            out.extend(f"  group {part.group}: {escape(_line(b, m, ids, was))}" for m in part.members)
    for m in c.merges:
        out.append(f"[yellow]merged[/yellow]: group {m.group} of B gathers groups "
                   f"{', '.join(str(p.group) for p in m.parts)} of A")
        for part in m.parts:
            out.extend(f"  from group {part.group}: {escape(_line(b, x, ids, was))}" for x in part.members)
    for r in c.renumbered:
        out.append(f"[yellow]renumbered[/yellow]: group {r.old} of A is group {r.new} in B "
                   f"({_addrs(r.members)})")
    for mv in c.moved:
        out.append(f"[yellow]moved[/yellow]: {mv.old.short} -> {escape(_line(b, mv.new, ids))}")
    out.extend(f"[red]vanished[/red] (only in A): {escape(lspci_line(d, ids))}" for d in c.vanished)
    out.extend(f"[green]appeared[/green] (only in B): {escape(lspci_line(d, ids))}" for d in c.appeared)
    # A device of a split or merged group is shown there already; list the others one by one.
    regrouped = {x for s in c.splits for p in s.parts for x in p.members} | {
        x for m in c.merges for p in m.parts for x in p.members}
    for ch in c.membership:
        if ch.address in regrouped:
            continue
        what = []
        if ch.gained:
            what.append(f"now with {_addrs(ch.gained, 6)}")
        if ch.lost:
            what.append(f"no longer with {_addrs(ch.lost, 6)}")
        if ch.lost_vanished:
            what.append(f"its companions {_addrs(ch.lost_vanished, 6)} vanished")
        out.append(f"[yellow]membership[/yellow]: {escape(_line(b, ch.address, ids))} "
                   f"(group {ch.old_group} -> {ch.new_group}): {'; '.join(what)}")
    if not c.identical:
        out.append(f"[bold]differ[/bold]: {len(c.splits)} split, {len(c.merges)} merged, "
                   f"{len(c.renumbered)} renumbered group(s); {len(c.moved)} moved, {len(c.vanished)} "
                   f"vanished, {len(c.appeared)} appeared device(s); {len(c.membership)} device(s) "
                   f"with other group companions")
    return out


def compare_json(c: Comparison, ids: PciIds) -> dict[str, Any]:
    from vfiokit.render.groups import device_json

    def dev(top: Topology, addr: PciAddress) -> dict[str, Any]:
        d: Device | None = top.by_address.get(addr)
        return device_json(d, ids) if d is not None else {"address": str(addr)}

    def addrs(xs: tuple[PciAddress, ...]) -> list[str]:
        return [str(x) for x in xs]

    return {
        "a": c.a.source,
        "b": c.b.source,
        "identical": c.identical,
        "in_common": c.in_common,
        "common_only": bool(c.ignored),
        "splits": [{"group": s.group, "into": [{"group": p.group, "devices": addrs(p.members)}
                                               for p in s.parts]} for s in c.splits],
        "merges": [{"group": m.group, "from": [{"group": p.group, "devices": addrs(p.members)}
                                               for p in m.parts]} for m in c.merges],
        "renumbered": [{"from": r.old, "to": r.new, "devices": addrs(r.members)} for r in c.renumbered],
        "moved": [{"from": str(m.old), "to": str(m.new), "device": dev(c.b, m.new)} for m in c.moved],
        "vanished": [device_json(d, ids) for d in c.vanished],
        "appeared": [device_json(d, ids) for d in c.appeared],
        "membership": [{"address": str(ch.address), "from_group": ch.old_group, "to_group": ch.new_group,
                        "gained": addrs(ch.gained), "lost": addrs(ch.lost),
                        "lost_vanished": addrs(ch.lost_vanished)} for ch in c.membership],
        "ignored": [{"side": side, "address": str(a)} for side, a in c.ignored],
    }
