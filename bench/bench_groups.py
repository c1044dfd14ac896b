"""Benchmark `vfiokit groups` against the article's script and `lspci -nn` on the same trees.

    python bench/bench_groups.py [--sizes 1000,10000] [--repeat 3]

Builds synthetic sysfs trees (several PCI domains and root buses, root ports with ACS, PCIe
switches, SR-IOV NICs with many virtual functions), lays them out on disk, and times, on each:
- the article's script (one `lspci -s` per device), at sizes up to 2,000 functions only (it runs
  for minutes beyond);
- `lspci -nn` over the whole tree;
- `vfiokit groups` (human view, written to a pipe) and `vfiokit groups --format seed`.
Prints wall times (best of --repeat), the ratios the targets are stated in, and vfiokit's peak
memory (max RSS of the process). Targets (issue 19): at 1,000 functions at least 100x faster than
the article's script; at 10,000 within 1.5x of `lspci -nn`; peak memory under 60 MB. `run.py`
prints these with the other figures in one table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from oracles.article import ARTICLE_SCRIPT, lspci_args

from interpreter import environment, interpreter
from vfiokit.model import (
    PCIE_DOWNSTREAM_PORT,
    PCIE_ENDPOINT,
    PCIE_ROOT_PORT,
    PCIE_UPSTREAM_PORT,
)
from vfiokit.sources.synthetic import Spec, capture_of
from vfiokit.sources.tree import materialize

ACS = (0x5F, 0x1D)
VFS_PER_NIC = 63


def machine(functions: int) -> list[Spec]:
    """About `functions` functions: per domain 4 root buses x 4 root ports x switch x 4 ports x NIC."""
    specs: list[Spec] = []
    group = 0

    def add(**kw) -> Spec:
        nonlocal group
        s = Spec(group=group, **kw)
        group += 1
        specs.append(s)
        return s

    domain = 0
    while len(specs) < functions:
        for root in (0x00, 0x40, 0x80, 0xC0):
            bus = root + 1
            add(address=f"{domain:04x}:{root:02x}:00.0", vendor=0x1022, device=0x1480, class_code=0x060000)
            for port in range(4):
                if len(specs) >= functions:
                    break
                rp = add(address=f"{domain:04x}:{root:02x}:01.{port}", vendor=0x1022, device=0x1483,
                         class_code=0x060400, pcie_type=PCIE_ROOT_PORT, acs=ACS, multifunction=True,
                         secondary_bus=bus, subordinate_bus=bus + 5, driver="pcieport")
                up = add(address=f"{domain:04x}:{bus:02x}:00.0", vendor=0x10B5, device=0x8747,
                         class_code=0x060400, parent=rp.address, pcie_type=PCIE_UPSTREAM_PORT,
                         secondary_bus=bus + 1, subordinate_bus=bus + 5, driver="pcieport")
                for dn in range(4):
                    leaf = bus + 2 + dn
                    down = add(address=f"{domain:04x}:{bus + 1:02x}:{dn:02x}.0", vendor=0x10B5, device=0x8747,
                               class_code=0x060400, parent=up.address, pcie_type=PCIE_DOWNSTREAM_PORT, acs=ACS,
                               secondary_bus=leaf, subordinate_bus=leaf, driver="pcieport")
                    pf = add(address=f"{domain:04x}:{leaf:02x}:00.0", vendor=0x8086, device=0x1572,
                             class_code=0x020000, revision=0x02, parent=down.address, pcie_type=PCIE_ENDPOINT,
                             driver="i40e", reset_method="flr bus")
                    for vf in range(VFS_PER_NIC):
                        if len(specs) >= functions:
                            break
                        slot, fn = divmod(vf + 8, 8)
                        add(address=f"{domain:04x}:{leaf:02x}:{slot:02x}.{fn}", vendor=0x8086, device=0x154C,
                            class_code=0x020000, revision=0x02, parent=down.address, pcie_type=PCIE_ENDPOINT,
                            physfn=pf.address, driver="iavf", reset_method="flr")
                bus += 6
        domain += 1
    return specs[:functions]


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run of `cmd`, output sent to a pipe and dropped."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    while proc.stdout.read(1 << 16):
        pass
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return elapsed, usage.ru_maxrss


def best(cmd: list[str], repeat: int, env: dict[str, str] | None = None) -> tuple[float, int]:
    runs = [timed(cmd, env) for _ in range(repeat)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    python = interpreter()
    vfiokit = [python, "-m", "vfiokit"]
    print(f"vfiokit on {python}")
    print(f"{'functions':>9} {'script':>9} {'lspci -nn':>9} {'vfiokit':>9} {'seed':>9} "
          f"{'script/vk':>9} {'vk/lspci':>9} {'peak MB':>8}")
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            tree = materialize(capture_of(machine(n)), Path(tmp) / "root")
            script_time = None
            if n <= 2000:
                script = Path(tmp) / "article.sh"
                script.write_text(ARTICLE_SCRIPT)
                env = {**os.environ, "SYS": f"{tree}/sys", "LC_ALL": "C"}
                script_time, _ = best(["bash", str(script), *lspci_args(tree)], 1, env)
            lspci_time, _ = best(["lspci", "-nn", *lspci_args(tree)], args.repeat)
            env = environment(python, Path(tmp) / "pycache")
            vk_time, vk_rss = best([*vfiokit, "groups", "--root", str(tree)], args.repeat, env)
            seed_time, seed_rss = best([*vfiokit, "groups", "--root", str(tree), "--format", "seed"], args.repeat, env)
            ratio_script = f"{script_time / vk_time:9.1f}" if script_time else f"{'-':>9}"
            script_col = f"{script_time:9.2f}" if script_time else f"{'-':>9}"
            print(f"{n:>9} {script_col} {lspci_time:9.3f} {vk_time:9.3f} {seed_time:9.3f} {ratio_script} "
                  f"{vk_time / lspci_time:9.2f} {max(vk_rss, seed_rss) / 1024:8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
