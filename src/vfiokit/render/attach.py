"""`vfiokit attach` decisions in words: the gate's notes and refusal, the API-token refusal."""

from __future__ import annotations

from vfiokit.analyses.attach_gate import COSTLY, UNSAFE, Gate
from vfiokit.render.reasons import headline, reason_text, verdict_notes

#: code: (what each serious reason means, the override hint, how the override reads once given)
_GATE_WORDS = {
    UNSAFE: ("breaks", "--force overrides, once you know what breaks", "forced"),
    COSTLY: ("leaves the host", "--accept-siblings accepts that they leave the host with it", "accepted"),
}


def gate_notes(g: Gate) -> list[str]:
    """The notes shown before the decision: the verdict's notes, then each serious reason."""
    if g.code is None:
        return verdict_notes(g.verdict)
    meaning = _GATE_WORDS[g.code][0]
    return [*verdict_notes(g.verdict), *(f"{meaning}: {reason_text(r)}" for r in g.serious)]


def gate_refusal(g: Gate) -> tuple[str, str]:
    """The refusal's message and hint (for a gate that is refused)."""
    assert g.code is not None
    return f"{g.code}: {headline(g.verdict)}", _GATE_WORDS[g.code][1]


def gate_accepted(g: Gate) -> str:
    """The note that says a gated verdict was overridden."""
    assert g.code is not None
    return f"{g.code}, {_GATE_WORDS[g.code][2]}: {headline(g.verdict)}"


def token_refusal(key: str, vmid: str, device: str) -> tuple[str, str]:
    """The refusal's message and hint when an API token would give a raw PCI device."""
    return ("an API token cannot give a raw PCI device to a VM (Proxmox: \"only root can set "
            f"'{key}' config for non-mapped devices\")",
            f"map it first: 'vfiokit cluster map NAME {device}@NODE', then "
            f"'vfiokit attach {vmid} --mapping NAME', or run vfiokit on the node")
