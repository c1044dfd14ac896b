"""How many IOMMU groups an ACS override would leave, beside today's (`boot acs-override` says it).

Pure: a topology with groups in, the counts out; `vfiokit simulate` shows which devices move.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vfiokit.analyses.grouping import parse_override, predict_groups
from vfiokit.model import Group, Topology


@dataclass(frozen=True)
class OverrideEffect:
    """Group counts today and with the override; `shared` counts groups of several devices."""

    modes: str
    groups_now: int
    shared_now: int
    groups_then: int
    shared_then: int


def _shared(groups: Sequence[Group]) -> int:
    return sum(1 for g in groups if len(g.members) > 1)


def override_effect(top: Topology, modes: str) -> OverrideEffect | None:
    """The counts, or None when `top` has no IOMMU groups to compare with."""
    if top.groups is None:
        return None
    after = predict_groups(top, parse_override(modes))
    return OverrideEffect(modes, len(top.groups), _shared(top.groups), len(after), _shared(after))
