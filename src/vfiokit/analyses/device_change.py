"""What an override changes for one device: its group, its mates and its `check` verdict, now and then.

Pure: today's topology, the predicted one and the simulation in, a JSON-ready report out (the
`devices` of `vfiokit simulate --json`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vfiokit.analyses.passthrough import judge
from vfiokit.errors import VfiokitError
from vfiokit.model import PciAddress, Topology

if TYPE_CHECKING:
    from vfiokit.analyses.simulation import Simulation


def _level(top: Topology, address: PciAddress) -> str:
    try:
        return judge(top, [address]).level.name.lower()
    except VfiokitError as e:  # e.g. a bridge, which `check` does not judge
        return f"not judged ({e})"


def device_report(top: Topology, predicted_top: Topology, sim: Simulation,
                  address: PciAddress) -> dict[str, Any]:
    """`address`'s group and verdict today and under the prediction (DeviceNotFound when absent)."""
    top.device(address)
    change = next((c for c in sim.changes if c.address == address), None)
    now = next((g for g in sim.current or () if address in g.members), None)
    then = next((g for g in sim.predicted if address in g.members), None)
    now_level = _level(top, address) if top.groups is not None else "no IOMMU groups today"
    then_level = None if sim.unknown else _level(predicted_top, address)
    return {
        "address": str(address),
        "current_group": None if now is None else now.number,
        "predicted_group": None if then is None else then.number,
        "current_mates": [str(a) for a in (now.members if now else ()) if a != address],
        "predicted_mates": [str(a) for a in (then.members if then else ()) if a != address],
        "changes": change is not None,
        "verdict_now": now_level,
        "verdict_then": then_level,
        "verdict_changes": None if sim.unknown else now_level != then_level,
        "known": sim.unknown is None,
    }
