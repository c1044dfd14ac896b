"""The JSON documents of `groups --json`, `check --json` and `simulate --json`, built in one place.

The commands print them and `vfiokit report` embeds them in its page, so the page can never say
something the CLI does not: both come from these functions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vfiokit.model import PciAddress, Topology
from vfiokit.pciids import PciIds
from vfiokit.render.check import verdict_json
from vfiokit.render.envelope import envelope
from vfiokit.render.needs import host_marker
from vfiokit.render.reasons import verdict_notes

if TYPE_CHECKING:
    from vfiokit.analyses.alone import AloneAdvice
    from vfiokit.analyses.passthrough import Verdict
    from vfiokit.analyses.simulation import Simulation

#: What the article enabled; `simulate`'s default when the host runs without an override.
DEFAULT_OVERRIDE = "downstream,multifunction"


def groups_document(top: Topology, ids: PciIds, next_boot: Mapping[PciAddress, str | None] | None = None,
                    notes: Sequence[str] = ()) -> str:
    """`groups --json` for a topology that has groups (`next_boot`: each device's driver at the
    next boot, when the source's boot configuration is readable)."""
    from vfiokit.render.groups import groups_json

    body = groups_json(top, ids, host_marker(top), next_boot)
    # After the names: pci.ids' note says the damaged lines their lookups reached.
    said = [*top.notes, *notes, *filter(None, [ids.missing_note])]
    return envelope("groups", top.source, said, **body)


def check_document(top: Topology, verdict: Verdict, ids: PciIds) -> str:
    """`check --json` for a verdict already reached on `top`."""
    body = verdict_json(verdict, ids)
    notes = [*top.notes, *verdict_notes(verdict), *filter(None, [ids.missing_note])]
    return envelope("check", top.source, notes, **body)


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
    top: Topology
    ids: PciIds

    @property
    def notes(self) -> list[str]:
        """What the output says besides; read it after the names are shown (pci.ids' note says the
        damaged lines their lookups reached)."""
        notes = [*self.top.notes, *self.sim.notes, *filter(None, [self.ids.missing_note])]
        if self.top.groups is None:
            notes.append(f"{self.top.source or 'this host'} has no IOMMU groups now: 'current' is empty and the "
                         "prediction is what the kernel will form once the IOMMU is on")
        return notes

    def document(self, source: str) -> str:
        """`simulate --json`."""
        from vfiokit.render.simulation import alone_json, simulation_json

        body = simulation_json(self.sim, self.reports)
        body["alone"] = [alone_json(x) for x in self.advice]
        return envelope("simulate", source, self.notes, **body)


def run_simulate(top: Topology, ids: PciIds, override_text: str | None, targets: Sequence[PciAddress] = (),
                 alone: Sequence[PciAddress | tuple[PciAddress, ...]] = ()) -> SimulateRun:
    """Everything `simulate` prints, for one override: `override_text`, else the one the first
    `alone` answer recommends, else `default_override`. An `alone` item is one function or every
    function of a card."""
    from vfiokit.analyses.acs_override import parse_override
    from vfiokit.analyses.alone import make_alone
    from vfiokit.analyses.device_change import device_report
    from vfiokit.analyses.simulation import simulate, with_groups

    advice = [make_alone(top, a) for a in alone]
    recommended = next((x.override for x in advice if x.override is not None and not x.already_alone), None)
    if override_text is not None:
        override = parse_override(override_text)
    else:
        # The table shows what the answer recommends, not the default.
        override = recommended if recommended is not None else parse_override(default_override(top))
    sim = simulate(top, override)
    reports: list[dict[str, Any]] = []
    if targets:  # the whole model again, with the predicted groups: only for --device
        predicted_top = with_groups(top, sim.predicted)
        reports = [device_report(top, predicted_top, sim, a) for a in targets]
    return SimulateRun(sim, reports, advice, top, ids)


def parsed(document: str) -> dict[str, Any]:
    """A document as data (what a reader of the command's output gets)."""
    data: dict[str, Any] = json.loads(document)
    return data
