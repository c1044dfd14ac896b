"""The `check` verdict gate every gated write shares (attach, bind): say it, then refuse or go on."""

from __future__ import annotations

from vfiokit.cli.output import note
from vfiokit.errors import Refused
from vfiokit.model import Topology


def check_gate(top: Topology, functions: list[str], force: bool, accept_siblings: bool) -> None:
    """The `check` verdict gate (analyses/attach_gate.py): unsafe needs --force, costly
    --accept-siblings; the reasons are said first."""
    from vfiokit.analyses.attach_gate import gate
    from vfiokit.render.attach import gate_accepted, gate_notes, gate_refusal

    g = gate(top, functions, force, accept_siblings)
    for n in gate_notes(g):
        note(n)
    if g.refused:
        message, hint = gate_refusal(g)
        raise Refused(message, hint=hint)
    if g.code is not None:
        note(gate_accepted(g))
