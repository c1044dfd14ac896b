"""Benchmark the listing reader and `vfiokit compare` on large pasted listings.

    python bench/bench_listing.py [--sizes 1000,10000] [--repeat 3]

Builds a machine of N functions (groups of 1 to 4), writes it in the formats people paste
(oracles/listing_render.py), and times, best of --repeat:
- `listing.read_text` per format (in process, pci.ids loaded once before timing);
- `vfiokit groups --listing FILE` and `vfiokit compare FILE FILE` as a user runs them.
Target: a 10,000-device listing reads in under a second.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from oracles.listing_render import FORMATS

from interpreter import environment, interpreter
from vfiokit.model import Device, Group, PciAddress, Topology
from vfiokit.pciids import PciIds
from vfiokit.sources import listing

NAMES = [("Advanced Micro Devices, Inc. [AMD]", "Starship/Matisse GPP Bridge", "PCI bridge", 0x1022, 0x060400),
         ("NVIDIA Corporation", "GP104 [GeForce GTX 1080]", "VGA compatible controller", 0x10DE, 0x030000),
         ("Intel Corporation", "I211 Gigabit Network Connection", "Ethernet controller", 0x8086, 0x020000)]


def machine(n: int) -> Topology:
    devices, groups = [], {}
    for i in range(n):
        addr = PciAddress(i // (256 * 32 * 8), (i // 256) % 256, (i // 8) % 32, i % 8)
        vendor, device, klass, vid, cc = NAMES[i % 3]
        group = i // 3
        devices.append(Device(addr, vendor_id=vid, device_id=0x1000 + i % 4096, class_code=cc, revision=1,
                              iommu_group=group, has_reset=True, vendor_name=vendor, device_name=device,
                              class_name=klass))
        groups.setdefault(group, []).append(addr)
    return Topology(tuple(devices), tuple(Group(g, tuple(m)) for g, m in groups.items()), source="bench")


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    ids = PciIds.system()
    ids.vendor_names()  # load pci.ids before timing
    python = interpreter()
    for n in map(int, args.sizes.split(",")):
        top = machine(n)
        print(f"{n} devices")
        for name in ("seed", "flat", "colon_tab", "ls_iommu", "r15ch13", "find", "pvesh"):
            text = FORMATS[name][0](top)
            t = best(lambda text=text, name=name: listing.parse_with_pciids(text, name), args.repeat)
            print(f"  read {name:<10} {len(text.splitlines()):>7} lines  {t * 1000:8.1f} ms")
        with tempfile.TemporaryDirectory() as tmp:
            env = environment(python, Path(tmp) / "pycache")
            path = Path(tmp) / "flat.txt"
            path.write_text(FORMATS["flat"][0](top))
            for argv in (["groups", "--listing", str(path)], ["compare", str(path), str(path)]):
                t = best(lambda argv=argv, env=env: subprocess.run([python, "-m", "vfiokit", *argv], env=env,
                                                          capture_output=True, check=False), args.repeat)
                print(f"  vfiokit {argv[0]:<18} {t * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
