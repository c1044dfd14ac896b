"""The model against the live kernel: the groups predicted for the override the host booted with,
compared with the kernel's real groups, group for group, numbers included. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from vfiokit.analyses.acs_override import AcsOverride, effective_override
from vfiokit.analyses.grouping import groups_of, predict_partition
from vfiokit.analyses.simulation import prediction_limited
from vfiokit.model import Group, Topology


@dataclass(frozen=True)
class ModelCheck:
    override: AcsOverride
    predicted: tuple[Group, ...]
    real: tuple[Group, ...]
    matches: bool
    #: One line per kernel group the prediction does not reproduce.
    differences: tuple[str, ...]
    limited: bool


def check_model(top: Topology) -> ModelCheck:
    """Predict the groups for the override the host booted with and compare them with the real
    ones, group for group, numbers included."""
    baseline = effective_override(top.host)
    part = predict_partition(top, baseline)
    predicted = groups_of(part)
    real = top.groups or ()
    real_sets = {g.members: g.number for g in real}
    pred_sets = {g.members: g.number for g in predicted}
    diffs: list[str] = []
    for g in real:
        short = " ".join(a.short for a in g.members)
        if g.members not in pred_sets:
            pieces = sorted({part[a] for a in g.members if a in part})
            diffs.append(f"kernel group {g.number} ({short}): predicted as "
                         + (", ".join(f"group {n}" for n in pieces) or "ungrouped"))
        elif pred_sets[g.members] != g.number:
            diffs.append(f"kernel group {g.number} ({short}): same devices, predicted number "
                         f"{pred_sets[g.members]}")
    for g in predicted:
        if g.members not in real_sets and not any(set(g.members) & set(r.members) for r in real):
            diffs.append(f"predicted group {g.number} ({' '.join(a.short for a in g.members)}) "
                         "has no device in any kernel group")
    return ModelCheck(baseline, predicted, real, not diffs, tuple(diffs), prediction_limited(top))
