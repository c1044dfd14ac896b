"""Benchmark `vfiokit report` on a large tree: page size, and how long Chromium takes to draw it.

    python bench/bench_report.py [--functions 10000]

Builds bench_simulate's synthetic machine (root ports with ACS, switches without, 8-function NICs),
writes the report page, then opens it in Debian's chromium headless (`--dump-dom`) and reads the
milliseconds the page's script measured from navigation start to the drawn tree and table
(`data-drawn-ms`). Also prints the wall-clock of the whole chromium run (browser start included)
and of an empty page, for scale. Targets: drawn in under 5 s, page under 5 MB.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_simulate import machine
from vfiokit.analyses.grouping import predict_groups
from vfiokit.analyses.simulation import with_groups
from vfiokit.pciids import PciIds
from vfiokit.render.report import collect, report_html
from vfiokit.sources.capture import build_topology
from vfiokit.sources.synthetic import capture_of

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=60000", "--dump-dom"]


def open_in_chromium(page: Path) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as profile:
        t = time.perf_counter()
        r = subprocess.run(["chromium", *FLAGS, f"--user-data-dir={profile}", page.resolve().as_uri()],
                           capture_output=True, text=True, check=True, timeout=300)
        return time.perf_counter() - t, r.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--functions", type=int, default=10_000)
    args = ap.parse_args()
    bare = build_topology(capture_of(machine(args.functions)), "benchmark machine")
    top = with_groups(bare, predict_groups(bare, None))
    t = time.perf_counter()
    data = collect(top, PciIds.system())
    page = report_html(data)
    t_build = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        path.write_text(page)
        empty = Path(tmp) / "empty.html"
        empty.write_text("<!DOCTYPE html><title>empty</title>")
        t_empty, _ = open_in_chromium(empty)
        t_open, dom = open_in_chromium(path)
    size = len(page.encode())
    drawn = re.search(r'data-drawn-ms="(\d+)"', dom)
    boxes = dom.count('class="dev')
    print(f"{len(top.devices)} functions, {len(data.groups['groups'])} groups, {len(data.checks)} check documents, "
          f"{len(data.simulate)} simulate documents")
    print(f"build documents + page (Python):   {t_build:8.2f} s")
    print(f"page size:                          {size / 1e6:8.2f} MB")
    if drawn is None:
        print("the page did not finish drawing")
        return 1
    ms = int(drawn[1])
    print(f"drawn in Chromium (page's clock):   {ms / 1000:8.2f} s  ({boxes} device boxes)")
    print(f"chromium run, wall clock:           {t_open:8.2f} s  (empty page: {t_empty:.2f} s)")
    ok = ms < 5000 and t_open - t_empty < 5 and size < 5e6
    print(f"targets: drawn under 5 s, page under 5 MB -> {'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
