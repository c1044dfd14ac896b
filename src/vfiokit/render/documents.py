"""The JSON documents of `groups --json`, `check --json` and `simulate --json`, built in one place.

The commands print them and `vfiokit report` embeds them in its page, so the page can never say
something the CLI does not: both come from these functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vfiokit.errors import VfiokitError
from vfiokit.model import Device, PciAddress, Topology
from vfiokit.pciids import PciIds
from vfiokit.render.envelope import envelope

if TYPE_CHECKING:
    from vfiokit.analyses.passthrough import Verdict
    from vfiokit.analyses.simulation import AloneAdvice, Simulation

#: What the article enabled; `simulate`'s default when the host runs without an override.
DEFAULT_OVERRIDE = "downstream,multifunction"


def host_marker(top: Topology) -> Callable[[Device], list[str]]:
    """For `groups`: a device's marks, e.g. "host needs: the network", "used by VM 100"."""
    from vfiokit.analyses.host_needs import needs

    used = needs(top.host_usage, top)

    def mark(dev: Device) -> list[str]:
        out: list[str] = []
        for n in used.get(dev.address, ()):
            text = f"used by {n.loss}" if n.kind == "vm" else f"host needs {n.loss}"
            if text not in out:
                out.append(text)
        return out

    return mark


def groups_document(top: Topology, ids: PciIds) -> str:
    """`groups --json` for a topology that has groups."""
    from vfiokit.render.groups import groups_json

    notes = [*top.notes, *filter(None, [ids.missing_note])]
    return envelope("groups", top.source, notes, **groups_json(top, ids, host_marker(top)))


def verdict_json(v: Verdict, ids: PciIds) -> dict[str, Any]:
    from vfiokit.analyses.passthrough import headline
    from vfiokit.render.groups import device_json

    return {
        "verdict": v.level.name.lower(),
        "summary": headline(v),
        "targets": [str(a) for a in v.targets],
        "groups": list(v.groups),
        # A reason's level is the verdict it points to; "info" when it weighs nothing (ALONE).
        "reasons": [{"level": "info" if r.level.name == "ALONE" else r.level.name.lower(), "text": r.text,
                     "device": None if r.address is None else str(r.address)} for r in v.reasons],
        "members": [
            {**device_json(m.device, ids), "role": m.role, "leaves_host": m.leaves_host,
             "critical": m.critical, "pass_along": m.pass_along,
             "needs": [{"kind": n.kind, "critical": n.critical, "loss": n.loss, "detail": n.detail}
                       for n in m.needs]}
            for m in v.members
        ],
    }


def check_document(top: Topology, verdict: Verdict, ids: PciIds) -> str:
    """`check --json` for a verdict already reached on `top`."""
    notes = [*top.notes, *verdict.notes, *filter(None, [ids.missing_note])]
    return envelope("check", top.source, notes, **verdict_json(verdict, ids))


def _level(top: Topology, address: PciAddress) -> str:
    from vfiokit.analyses.passthrough import judge

    try:
        return judge(top, [address]).level.name.lower()
    except VfiokitError as e:  # e.g. a bridge, which `check` does not judge
        return f"not judged ({e})"


def device_report(top: Topology, predicted_top: Topology, sim: Simulation, address: PciAddress) -> dict[str, Any]:
    """`simulate --device`: how one device's group and its `check` verdict change."""
    top.device(address)
    change = next((c for c in sim.changes if c.address == address), None)
    now = next((g for g in sim.current or () if address in g.members), None)
    then = next((g for g in sim.predicted if address in g.members), None)
    now_level = _level(top, address) if top.groups is not None else "no IOMMU groups today"
    then_level = _level(predicted_top, address)
    return {
        "address": str(address),
        "current_group": None if now is None else now.number,
        "predicted_group": None if then is None else then.number,
        "current_mates": [str(a) for a in (now.members if now else ()) if a != address],
        "predicted_mates": [str(a) for a in (then.members if then else ()) if a != address],
        "changes": change is not None,
        "verdict_now": now_level,
        "verdict_then": then_level,
        "verdict_changes": now_level != then_level,
    }


def default_override(top: Topology) -> str:
    """`simulate`'s override when none is given: none on a host already booted with one."""
    from vfiokit.analyses.acs_override import effective_override

    return "none" if not effective_override(top.host).empty else DEFAULT_OVERRIDE


@dataclass(frozen=True)
class SimulateRun:
    """What `simulate` computed: the simulation, the `--device` reports, the `--alone` advice, notes."""

    sim: Simulation
    reports: list[dict[str, Any]]
    advice: list[AloneAdvice]
    notes: list[str]

    def document(self, source: str) -> str:
        """`simulate --json`."""
        from vfiokit.render.simulation import alone_json, simulation_json

        body = simulation_json(self.sim, self.reports)
        body["alone"] = [alone_json(x) for x in self.advice]
        return envelope("simulate", source, self.notes, **body)


def run_simulate(top: Topology, ids: PciIds, override_text: str, targets: Sequence[PciAddress] = (),
                 alone: Sequence[PciAddress] = ()) -> SimulateRun:
    """Everything `simulate` prints, for one override."""
    from vfiokit.analyses.acs_override import parse_override
    from vfiokit.analyses.simulation import make_alone, simulate, with_groups

    sim = simulate(top, parse_override(override_text))
    predicted_top = with_groups(top, sim.predicted)
    reports = [device_report(top, predicted_top, sim, a) for a in targets]
    advice = [make_alone(top, a) for a in alone]
    notes = [*top.notes, *sim.notes, *filter(None, [ids.missing_note])]
    if top.groups is None:
        notes.append(f"{top.source or 'this host'} has no IOMMU groups now: 'current' is empty and the "
                     "prediction is what the kernel will form once the IOMMU is on")
    return SimulateRun(sim, reports, advice, notes)


def parsed(document: str) -> dict[str, Any]:
    """A document as data (what a reader of the command's output gets)."""
    data: dict[str, Any] = json.loads(document)
    return data
