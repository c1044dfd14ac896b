"""Benchmark `vfiokit report` on a large tree: page size, and how long Chromium takes to draw it.

    python bench/bench_report.py [--functions 10000]

Builds bench_simulate's synthetic machine (root ports with ACS, switches without, 8-function NICs),
writes the report page, then opens it in Debian's chromium headless as `report.html?timing`: the
page then logs a console line once its tree and table are drawn, and Chromium's log stamps it with
the wall-clock time. The page's own clocks cannot be used: `--virtual-time-budget` (which lets
`--dump-dom` wait for the page's asynchronous inflate) makes them virtual. Prints the time from
starting Chromium to the drawn page, the same for an empty page that logs the same line (the
browser's own start), and their difference: the render time. Targets: render under 5 s, page under 5 MB.
"""

from __future__ import annotations

import argparse
import datetime
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


#: Chromium's log prefix: [pid:tid:MMDD/HHMMSS.micro:LEVEL:...], in local time.
STAMP = re.compile(r"\[\d+:\d+:\d{4}/(\d{2})(\d{2})(\d{2}\.\d+):INFO:CONSOLE[^\]]*\] \"(?P<msg>[^\"]*)\"")


def open_in_chromium(page: Path, query: str = "") -> tuple[float | None, str]:
    """Seconds from starting Chromium to the page's "drawn" console line (None if never), the DOM."""
    with tempfile.TemporaryDirectory() as profile:
        start = datetime.datetime.now()
        r = subprocess.run(["chromium", *FLAGS, "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}",
                            page.resolve().as_uri() + query], capture_output=True, text=True, check=True, timeout=300)
    for m in STAMP.finditer(r.stderr):
        if m["msg"] == "vfiokit: drawn":
            h, mi, sec = int(m[1]), int(m[2]), float(m[3])
            at = start.replace(hour=h, minute=mi, second=int(sec), microsecond=int(sec % 1 * 1e6))
            if at < start - datetime.timedelta(seconds=1):  # the run crossed midnight
                at += datetime.timedelta(days=1)
            return (at - start).total_seconds(), r.stdout
    return None, r.stdout


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
        empty.write_text('<!DOCTYPE html><title>empty</title><script>console.log("vfiokit: drawn")</script>')
        t_empty, _ = open_in_chromium(empty)
        drawn, dom = open_in_chromium(path, "?timing")
    size = len(page.encode())
    boxes = dom.count('class="dev')
    print(f"{len(top.devices)} functions, {len(data.groups['groups'])} groups, {len(data.checks)} check documents, "
          f"{len(data.simulate)} simulate documents")
    print(f"build documents + page (Python):   {t_build:8.2f} s")
    print(f"page size:                          {size / 1e6:8.2f} MB")
    if drawn is None:
        print("the page did not finish drawing")
        return 1
    assert t_empty is not None
    print(f"drawn, from starting Chromium:      {drawn:8.2f} s  ({boxes} device boxes)")
    print(f"an empty page, from starting it:    {t_empty:8.2f} s  (the browser's own start)")
    print(f"render time (the difference):       {drawn - t_empty:8.2f} s")
    ok = drawn - t_empty < 5 and size < 5e6
    print(f"targets: drawn under 5 s, page under 5 MB -> {'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
