"""`vfiokit report`: one self-contained HTML page of the PCI tree, its IOMMU groups and verdicts.

The page holds the very documents `groups --json`, `check --json` and `simulate --json` print (one
`check` per device, one `simulate` per ACS override option and per `--alone` suggestion), so it can
never disagree with the CLI; its script only lays them out. They travel gzip-compressed and base64
encoded in one inline script element: the documents repeat each device many times (every `check`
lists the whole group), which gzip folds away, and browsers inflate it natively
(`DecompressionStream`), so the page needs no library and no network.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vfiokit import __version__, package_data
from vfiokit.model import PciAddress, Topology
from vfiokit.pciids import PciIds
from vfiokit.render.documents import check_document, groups_document, parsed, run_simulate

#: The override switch's positions, in the order the page shows them.
OVERRIDES = ("none", "downstream", "multifunction", "downstream,multifunction")
#: Above this many candidate devices, `--alone` suggestions are computed only for the devices named
#: with `--alone` (each one re-predicts the groups under every candidate override: ~0.2 s on a
#: 10,000-function tree).
ALONE_AUTO_LIMIT = 64


@dataclass(frozen=True)
class ReportData:
    """What the page embeds: the CLI's documents, and the facts its header shows."""

    groups: dict[str, Any]
    checks: dict[str, dict[str, Any]]
    simulate: dict[str, dict[str, Any]]
    #: The document whose `alone` list holds the suggestions (`simulate --acs-override none --alone ...`).
    alone: dict[str, Any]
    meta: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        return {"meta": self.meta, "groups": self.groups, "checks": self.checks, "simulate": self.simulate,
                "alone": self.alone}


def alone_candidates(top: Topology) -> list[PciAddress]:
    """Devices that share their group with another device Proxmox would bind (bridges stay)."""
    out = []
    for g in top.groups or ():
        functions = [a for a in g.members if a in top.by_address and not top.by_address[a].is_bridge]
        if len(g.members) > 1:
            out.extend(functions)
    return out


def collect(top: Topology, ids: PciIds, alone: Sequence[PciAddress] | None = None) -> ReportData:
    """Build every document the page shows. `alone`: devices to find an override for (None: each
    device that shares its group, when there are at most ALONE_AUTO_LIMIT of them)."""
    from vfiokit.analyses.passthrough import judge

    groups = parsed(groups_document(top, ids))
    checks = {}
    for dev in top.devices:
        # `check` refuses bridges and devices outside any group: the page shows why instead.
        if dev.is_bridge or dev.iommu_group is None:
            continue
        checks[str(dev.address)] = parsed(check_document(top, judge(top, [dev.address]), ids))
    candidates = alone_candidates(top)
    auto = alone is None
    if alone is None:
        alone = candidates if len(candidates) <= ALONE_AUTO_LIMIT else []
    advice = run_simulate(top, ids, "none", (), alone)
    alone_doc = parsed(advice.document(top.source))
    simulate = {o: parsed(run_simulate(top, ids, o).document(top.source)) for o in OVERRIDES}
    for x in advice.advice:
        key = None if x.override is None else str(x.override)
        if key is not None and key not in simulate:
            simulate[key] = parsed(run_simulate(top, ids, key).document(top.source))
    host = top.host
    meta = {
        "vfiokit": __version__,
        "source": top.source,
        "hostname": host.hostname,
        "board": host.board,
        "kernel": host.kernel_release,
        "cmdline": host.cmdline,
        # sysfs sources know the bridge above each function; a pasted listing knows none.
        "tree_known": any(d.sysfs_path or d.parent for d in top.devices),
        "alone_skipped": len(candidates) - len(alone) if auto else 0,
    }
    return ReportData(groups, checks, simulate, alone_doc, meta)


def _asset(name: str) -> str:
    return package_data.read_text("render", "report_page", name)


def encode_payload(payload: dict[str, Any]) -> str:
    """gzip (fixed mtime, so a report of the same host is byte-identical) then base64."""
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")


def decode_payload(text: str) -> dict[str, Any]:
    """The inverse of `encode_payload`, for tests and for anyone extracting the data."""
    data: dict[str, Any] = json.loads(gzip.decompress(base64.b64decode(text)))
    return data


def report_html(data: ReportData) -> str:
    """The page: template, inline style and script, and the documents."""
    meta = data.meta
    title = f"vfiokit report: {meta['hostname'] or meta['source'] or 'host'}"
    page = _asset("page.html")
    for key, value in (("TITLE", html.escape(title)), ("STYLE", _asset("page.css")),
                       ("SCRIPT", _asset("page.js")), ("DATA", encode_payload(data.payload()))):
        page = page.replace("{{" + key + "}}", value)
    return page
