"""Benchmark `vfiokit simulate` (the prediction with and without an ACS override) on a large tree.

    python bench/bench_simulate.py [--functions 10000] [--repeat 3]

Builds a synthetic machine with synthetic.Spec (real config-space bytes): several PCI domains
with 4 root buses each, root ports with ACS, PCIe switches whose downstream ports lack ACS, and
SR-IOV-like multifunction NICs (8 functions, no ACS) behind them, about --functions in all. Times
the whole analysis `simulate()` (current vs predicted with downstream,multifunction, the natural
groups, per-device changes, assumed isolation) and the bare `predict_groups` without override,
best of --repeat. Target: simulate on 10,000 functions in under 1 second.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vfiokit.analyses.grouping import parse_override, predict_groups
from vfiokit.analyses.simulation import simulate, with_groups
from vfiokit.model import PCIE_DOWNSTREAM_PORT, PCIE_ENDPOINT, PCIE_ROOT_PORT, PCIE_UPSTREAM_PORT
from vfiokit.sources.capture import build_topology
from vfiokit.sources.synthetic import Spec, capture_of

ACS = (0x5F, 0x1D)
NIC_FUNCTIONS = 8


def machine(functions: int) -> list[Spec]:
    """Per domain: 4 root buses x 8 root ports x (switch: upstream + 4 downstream ports) x NIC."""
    specs: list[Spec] = []
    domain = 0
    while len(specs) < functions:
        for root in (0x00, 0x40, 0x80, 0xC0):
            specs.append(Spec(f"{domain:04x}:{root:02x}:00.0", 0x1022, 0x1480, 0x060000))
            bus = root + 1
            for port in range(8):
                rp = f"{domain:04x}:{root:02x}:{port + 1:02x}.0"
                specs.append(Spec(rp, 0x1022, 0x1483, 0x060400, pcie_type=PCIE_ROOT_PORT, acs=ACS,
                                  secondary_bus=bus, subordinate_bus=bus + 5))
                up = f"{domain:04x}:{bus:02x}:00.0"
                specs.append(Spec(up, 0x1B21, 0x2824, 0x060400, parent=rp, pcie_type=PCIE_UPSTREAM_PORT,
                                  secondary_bus=bus + 1, subordinate_bus=bus + 5))
                for dp in range(4):
                    dpa = f"{domain:04x}:{bus + 1:02x}:{dp:02x}.0"
                    nic_bus = bus + 2 + dp
                    specs.append(Spec(dpa, 0x1B21, 0x2824, 0x060400, parent=up, pcie_type=PCIE_DOWNSTREAM_PORT,
                                      secondary_bus=nic_bus))
                    for fn in range(NIC_FUNCTIONS):
                        specs.append(Spec(f"{domain:04x}:{nic_bus:02x}:00.{fn}", 0x15B3, 0x1017 + fn,
                                          0x020000, parent=dpa, pcie_type=PCIE_ENDPOINT, multifunction=True))
                bus += 6
                if len(specs) >= functions:
                    return specs
        domain += 1
    return specs


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--functions", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    bare = build_topology(capture_of(machine(args.functions)), "benchmark machine")
    # As read from a running host: the kernel's groups (no override) are there to compare with.
    top = with_groups(bare, predict_groups(bare, None))
    override = parse_override("downstream,multifunction")
    t_none, groups = best_of(args.repeat, lambda: predict_groups(top, None))
    t_sim, sim = best_of(args.repeat, lambda: simulate(top, override))
    print(f"{len(top.devices)} functions")
    print(f"predict_groups, no override:           {t_none * 1000:8.1f} ms  ({len(groups)} groups)")
    print(f"simulate downstream,multifunction:     {t_sim * 1000:8.1f} ms  ({len(sim.predicted)} groups, "
          f"{len(sim.assumed)} hardware groups cut)")
    verdict = "OK" if t_sim < 1.0 else "TOO SLOW"
    print(f"target: simulate under 1 s -> {verdict}")
    return 0 if t_sim < 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
