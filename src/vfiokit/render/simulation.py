"""Views of a simulation: rich text (a side-by-side table and the warnings) and JSON bodies.

rich is imported where markup is made: `--json` never loads it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from vfiokit.analyses.alone import AloneAdvice
from vfiokit.analyses.model_check import Difference, ModelCheck
from vfiokit.analyses.simulation import AssumedIsolation, Simulation
from vfiokit.model import Group, PciAddress, Topology
from vfiokit.pciids import PciIds, lspci_line

PATCH_NOTE = ("pcie_acs_override exists only in patched kernels: Proxmox VE's kernel carries the patch; "
              "a stock kernel ignores the option (it lists it among unknown parameters).")
ASSUMED_HEAD = ("Isolation assumed, not enforced. With this override the kernel only assumes that these "
                "devices cannot reach each other; the hardware does not stop them. Devices on one line below "
                "can read and write each other's memory by peer-to-peer DMA that the IOMMU never sees: a VM "
                "given one of them can reach the others, and through them the host.")


def _line(top: Topology, ids: PciIds, a: PciAddress) -> str:
    dev = top.by_address.get(a)
    return lspci_line(dev, ids, numeric=True) if dev is not None else a.short


def _shorts(addrs: tuple[PciAddress, ...] | list[PciAddress]) -> str:
    return " ".join(a.short for a in addrs)


#: A styled line for cli.output.print_lines: (text, rich style or None) segments.
Line = list[tuple[str, str | None]]


def side_by_side(top: Topology, sim: Simulation, ids: PciIds) -> tuple[int, Iterator[Line]]:
    """One row per device: today's group, the predicted group, the device; changed rows in yellow.
    Laid out as a table (group numbers right-aligned under their heading, two spaces between
    columns), one row at a time: a 50,000-row rich Table took 9 s to lay out. Returns the column
    the device starts at (where a wrapped row goes on) and the rows."""
    now = {a: g.number for g in sim.current or () for a in g.members}
    then = {a: g.number for g in sim.predicted for a in g.members}
    changed = {c.address for c in sim.changes if c.separated_from or c.joined_with}
    if sim.unknown:
        rows = sorted(top.by_address, key=lambda a: (now.get(a, 1 << 30), a))
    else:
        rows = sorted({*now, *then} & top.by_address.keys(),
                      key=lambda a: (now.get(a, 1 << 30), then.get(a, 1 << 30), a))
    today = [str(now.get(a, "-")) for a in rows]
    predicted = ["?"] * len(rows) if sim.unknown else [str(then.get(a, "-")) for a in rows]
    w_today = max(map(len, ["today", *today]))
    w_predicted = max(map(len, ["predicted", *predicted]))

    def lines() -> Iterator[Line]:
        yield [("today".rjust(w_today), "bold"), ("  ", None), ("predicted".rjust(w_predicted), "bold"),
               ("  ", None), ("device", "bold")]
        for a, n, p in zip(rows, today, predicted, strict=True):
            style = "yellow" if a in changed else None
            yield [(n.rjust(w_today), style), ("  ", None), (p.rjust(w_predicted), style), ("  ", None),
                   (_line(top, ids, a).rstrip(), style)]

    return w_today + 2 + w_predicted + 2, lines()


def summary_lines(sim: Simulation) -> list[str]:
    from rich.markup import escape

    out = [f"[bold]pcie_acs_override={escape(str(sim.override))}[/bold] "
           f"[dim](groups today were formed with: {escape(str(sim.baseline))})[/dim]"]
    if sim.unknown:
        return [*out, f"[yellow]the groups with this override are unknown:[/yellow] {escape(sim.unknown)}"]
    for n, pieces in sim.splits:
        out.append(f"group {n} splits into {len(pieces)} groups: "
                   + ", ".join(f"{g.number} ({_shorts(g.members)})" for g in pieces))
    for g, olds in sim.merges:
        out.append(f"groups {', '.join(map(str, olds))} merge into group {g.number} ({_shorts(g.members)})")
    alone = [c.address for c in sim.changes if c.alone_then and not c.alone_now]
    if alone:
        out.append(f"[green]{len(alone)} device(s) become alone:[/green] {_shorts(alone)}")
    lost = [c.address for c in sim.changes if c.alone_now and not c.alone_then]
    if lost:
        out.append(f"[red]{len(lost)} device(s) are alone today and would not be:[/red] {_shorts(lost)}")
    if not sim.splits and not sim.merges:
        out.append("no group changes")
    return out


def _assumed_lines(items: tuple[AssumedIsolation, ...]) -> list[Line]:
    out: list[Line] = []
    for item in items:
        because = ", ".join(f"{a.short} ({why})" for a, why in item.because)
        out.append([("  ", None), (_shorts(item.devices), "red"),
                    ("  ", None), (f"one hardware group cut into {len(item.pieces)}; assumed isolating: "
                                   f"{because or 'none'}", "dim")])
    return out


def warning_lines(sim: Simulation) -> list[Line]:
    """The isolation an override only assumes, group by group, and whether the kernel has the patch
    (styled lines: a host cut into thousands of groups gets as many lines)."""
    out: list[Line] = []
    if sim.assumed:
        out.append([(ASSUMED_HEAD, "bold red")])
        out += _assumed_lines(sim.assumed)
    if sim.assumed_today:
        out.append([(f"Today, with pcie_acs_override={sim.baseline}: {ASSUMED_HEAD}", "bold red")])
        out += _assumed_lines(sim.assumed_today)
    support = sim.support
    tone = {True: "dim", False: "bold red", None: "yellow"}[support.patched]
    if not sim.override.empty or not sim.baseline.empty:
        out.append([(f"{PATCH_NOTE} This host: {support.evidence}.", tone)])
    return out


class _Texts(dict[PciAddress, str]):
    """Each address's text, formatted once: a document names most devices several times."""

    def __missing__(self, a: PciAddress) -> str:
        text = self[a] = str(a)
        return text


def _groups_json(groups: tuple[Group, ...] | None, text: _Texts) -> list[dict[str, Any]] | None:
    if groups is None:
        return None
    name = text.__getitem__
    return [{"number": g.number, "devices": list(map(name, g.members))} for g in groups]


def _assumed_json(items: tuple[AssumedIsolation, ...], text: _Texts) -> list[dict[str, Any]]:
    return [{"devices": [text[a] for a in item.devices], "groups": [g.number for g in item.pieces],
             "because": [{"address": text[a], "option": why} for a, why in item.because]}
            for item in items]


def simulation_json(sim: Simulation, devices: list[dict[str, Any]]) -> dict[str, Any]:
    text = _Texts()
    return {
        "override": str(sim.override),
        "baseline": str(sim.baseline),
        "kernel_support": {"patched": sim.support.patched, "evidence": sim.support.evidence},
        "limited": sim.limited,
        "known": sim.unknown is None,
        "unknown_because": sim.unknown,
        "current": _groups_json(sim.current, text),
        "predicted": None if sim.unknown else _groups_json(sim.predicted, text),
        "splits": [{"current": n, "into": [g.number for g in pieces]} for n, pieces in sim.splits],
        "merges": [{"predicted": g.number, "from": list(olds)} for g, olds in sim.merges],
        "changes": [
            {"address": text[c.address], "current_group": c.current, "predicted_group": c.predicted,
             "separated_from": [text[a] for a in c.separated_from],
             "joined_with": [text[a] for a in c.joined_with],
             "alone_now": c.alone_now, "alone_then": c.alone_then}
            for c in sim.changes
        ],
        "assumed_isolation": _assumed_json(sim.assumed, text),
        "assumed_isolation_today": _assumed_json(sim.assumed_today, text),
        "devices": devices,
    }


def alone_lines(top: Topology, advice: AloneAdvice, ids: PciIds) -> list[str]:
    from rich.markup import escape

    targets = advice.targets or (advice.address,)
    head = "\n".join(f"[bold]{escape(_line(top, ids, a))}[/bold]" for a in targets)
    if advice.already_alone:
        return [head, "  already alone in its IOMMU group without any override"]
    if advice.override is not None:
        lines = [head, f"  smallest override that makes it alone: [bold]pcie_acs_override="
                       f"{escape(str(advice.override))}[/bold]"]
        if advice.also_affected:
            lines.append(f"  it also changes the groups of {len(advice.also_affected)} other device(s): "
                         f"{_shorts(advice.also_affected)}")
        else:
            lines.append("  it changes no other device's group")
        if advice.splits_card:
            slot = targets[0].short[:5]
            lines.append(f"  [yellow]it also separates {_shorts(targets)} from its own card's other "
                         f"function(s) {_shorts(advice.splits_card)}: Proxmox passes a card's functions "
                         f"together; ask for the whole card with --alone {slot}[/yellow]")
        lines.append(f"  [red]assumed, not enforced: {_shorts(advice.dma_peers)} can still reach it by "
                     "peer-to-peer DMA[/red]")
        return lines
    if not advice.known:
        return [head, *(f"  [yellow]cannot tell:[/yellow] {escape(b)}" for b in advice.blockers)]
    return [head, "  [red]no ACS override can make it alone:[/red]",
            *(f"  - {escape(b)}" for b in advice.blockers)]


def alone_json(advice: AloneAdvice) -> dict[str, Any]:
    return {"address": str(advice.address), "targets": [str(a) for a in advice.targets or (advice.address,)],
            "already_alone": advice.already_alone,
            "override": None if advice.override is None else str(advice.override),
            "known": advice.known,
            "also_affected": [str(a) for a in advice.also_affected], "blockers": list(advice.blockers),
            "dma_peers": [str(a) for a in advice.dma_peers],
            "splits_card": [str(a) for a in advice.splits_card]}


MODEL_CAUSES = ("possible causes: a DMA alias the firmware declares (AMD IVRS, Switchtec NTB), a device "
                "quirk vfiokit lacks, IOMMU groups of non-PCI devices taking numbers, or a kernel whose "
                "rules differ from 6.12's")


def model_check_lines(check: ModelCheck) -> list[str]:
    from rich.markup import escape

    if check.unknown:
        return [f"[yellow]the groups cannot be predicted from this source:[/yellow] {escape(check.unknown)}"]
    if check.matches:
        return [f"[green]the prediction matches the kernel:[/green] {len(check.real)} groups, "
                f"numbers included [dim](override: {escape(str(check.override))})[/dim]"]
    return ([f"[yellow]the prediction differs from the kernel in {len(check.differences)} place(s)[/yellow] "
             f"[dim](override: {escape(str(check.override))})[/dim]"]
            + [f"  {escape(difference_text(d))}" for d in check.differences]
            + [f"[dim]{escape(MODEL_CAUSES)}[/dim]"])


def difference_text(d: Difference) -> str:
    """One group the prediction does not reproduce, in words."""
    short = " ".join(a.short for a in d.members)
    if d.code == "split":
        return (f"kernel group {d.group} ({short}): predicted as "
                + (", ".join(f"group {n}" for n in d.pieces) or "ungrouped"))
    if d.code == "renumbered":
        return f"kernel group {d.group} ({short}): same devices, predicted number {d.pieces[0]}"
    return f"predicted group {d.group} ({short}) has no device in any kernel group"


def model_check_json(check: ModelCheck) -> dict[str, Any]:
    text = _Texts()
    return {"override": str(check.override), "known": check.unknown is None,
            "unknown_because": check.unknown,
            "matches": None if check.unknown else check.matches, "limited": check.limited,
            "differences": [difference_text(d) for d in check.differences],
            "mismatches": [{"code": d.code, "group": d.group, "members": [str(a) for a in d.members],
                            "predicted": list(d.pieces)} for d in check.differences],
            "predicted": None if check.unknown else _groups_json(check.predicted, text),
            "real": _groups_json(check.real, text)}


def device_lines(report: dict[str, Any]) -> list[str]:
    """`simulate --device`: the device's group now -> then, and whether its check verdict changes."""
    a = PciAddress.parse(report["address"]).short
    now, then = report["current_group"], report["predicted_group"]
    mates_now, mates_then = len(report["current_mates"]), len(report["predicted_mates"])

    def group(number: int | None, mates: int) -> str:
        if number is None:
            return "no group"
        return f"group {number} ({'alone' if not mates else f'with {mates} other(s)'})"

    if not report["known"]:
        return [f"[bold]{a}[/bold]: {group(now, mates_now)} -> [yellow]? (unknown)[/yellow]",
                f"  check verdict with the override: unknown (today: {report['verdict_now']})"]
    lines = [f"[bold]{a}[/bold]: {group(now, mates_now)} -> {group(then, mates_then)}"]
    if report["verdict_changes"]:
        lines.append(f"  [yellow]check verdict changes: {report['verdict_now']} -> "
                     f"{report['verdict_then']}[/yellow]")
    else:
        lines.append(f"  check verdict unchanged: {report['verdict_now']}")
    return lines
