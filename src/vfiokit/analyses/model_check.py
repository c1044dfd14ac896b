"""The model against the live kernel: the groups predicted for the override the host booted with,
compared with the kernel's real groups, group for group, numbers included. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from vfiokit.analyses.acs_override import AcsOverride, effective_override
from vfiokit.analyses.grouping import groups_of, predict_partition
from vfiokit.analyses.simulation import prediction_limited, prediction_unknown
from vfiokit.model import Group, PciAddress, Topology


@dataclass(frozen=True)
class Difference:
    """One group the prediction does not reproduce, as a code and its facts (`render` words it):
    "split" (a kernel group predicted as `pieces`, none when ungrouped), "renumbered" (same
    devices, predicted number `pieces[0]`) or "extra" (a predicted group with no device in any
    kernel group)."""

    code: str
    group: int
    members: tuple[PciAddress, ...]
    pieces: tuple[int, ...] = ()


@dataclass(frozen=True)
class ModelCheck:
    override: AcsOverride
    predicted: tuple[Group, ...]
    real: tuple[Group, ...]
    matches: bool
    #: One per group the prediction does not reproduce.
    differences: tuple[Difference, ...]
    limited: bool
    #: Why nothing can be predicted from this source (see `prediction_unknown`); None when it can.
    unknown: str | None = None


def check_model(top: Topology) -> ModelCheck:
    """Predict the groups for the override the host booted with and compare them with the real
    ones, group for group, numbers included."""
    baseline = effective_override(top.host)
    if (unknown := prediction_unknown(top)) is not None:
        return ModelCheck(baseline, (), top.groups or (), False, (), prediction_limited(top), unknown)
    part = predict_partition(top, baseline)
    predicted = groups_of(part)
    real = top.groups or ()
    real_sets = {g.members: g.number for g in real}
    pred_sets = {g.members: g.number for g in predicted}
    diffs: list[Difference] = []
    for g in real:
        if g.members not in pred_sets:
            pieces = tuple(sorted({part[a] for a in g.members if a in part}))
            diffs.append(Difference("split", g.number, g.members, pieces))
        elif pred_sets[g.members] != g.number:
            diffs.append(Difference("renumbered", g.number, g.members, (pred_sets[g.members],)))
    for g in predicted:
        if g.members not in real_sets and not any(set(g.members) & set(r.members) for r in real):
            diffs.append(Difference("extra", g.number, g.members))
    return ModelCheck(baseline, predicted, real, not diffs, tuple(diffs), prediction_limited(top))
