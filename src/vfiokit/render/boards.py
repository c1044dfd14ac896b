"""`vfiokit boards`: one block per bundled listing, the buyer's view first, then where it comes from."""

from __future__ import annotations

from typing import Any

from vfiokit.analyses.board_summary import BoardSummary, Placement


def _place(p: Placement) -> str:
    if p.group is None:
        return f"{p.address.short} in no group"
    if p.alone:
        return f"{p.address.short} alone (group {p.group})"
    n = len(p.others)
    return f"{p.address.short} shares group {p.group} with {n} other device{'s' if n != 1 else ''}"


def _override(s: BoardSummary) -> str:
    on = s.header.override_on
    text = {True: "ACS override ON (these groups are with it)", False: "no ACS override",
            None: "ACS override unknown"}[on]
    if s.siblings:
        text += f"; {'without' if on else 'with'} it: see {', '.join(s.siblings)}"
    return text


def lines(s: BoardSummary) -> list[str]:
    """Plain text lines (no markup: board names hold brackets)."""
    h = s.header
    out = [f"{h.name}: {h.board}", f"  {h.chipset} | {h.cpu} | kernel {h.kernel} | {h.date} | {_override(s)}"]
    cards = [f"GPU {_place(p)}" for p in s.gpus] or ["no discrete GPU in the listing"]
    out.append(f"  {s.groups} groups; x16 cards: " + "; ".join(cards))
    by_kind: dict[str, list[str]] = {}
    for p in s.onboard:
        by_kind.setdefault(p.kind, []).append(_place(p))
    if by_kind:
        out.append("  onboard: " + "; ".join(f"{k} {', '.join(v)}" for k, v in by_kind.items()))
    out.append(f"  source: {h.url}")
    return out


def _place_json(p: Placement) -> dict[str, Any]:
    return {"address": str(p.address), "kind": p.kind, "group": p.group, "alone": p.alone,
            "shares_with": [str(a) for a in p.others]}


def as_json(s: BoardSummary) -> dict[str, Any]:
    h = s.header
    return {"name": h.name, "board": h.board, "vendor": h.vendor, "chipset": h.chipset, "cpu": h.cpu,
            "kernel": h.kernel, "cmdline": h.cmdline, "date": h.date, "acs_override": h.acs_override,
            "override_on": h.override_on, "url": h.url, "stated": h.stated, "inferred": h.inferred,
            "groups": s.groups, "gpus": [_place_json(p) for p in s.gpus],
            "onboard": [_place_json(p) for p in s.onboard], "siblings": list(s.siblings)}
