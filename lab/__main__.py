"""`python -m lab list | run [-k KERNEL] [NAME...] | regen [-k KERNEL] [NAME...]`.

`run` boots the named topologies (all by default) under each kernel of lab/fetch.py (all by
default) and checks that the groups vfiokit captured in each guest equal the guest kernel's own
listing; `regen` does the same and rewrites the committed fixtures: the snapshot as the bundled
sample and the kernel's own listing as a `.truth` file. Under the first kernel (6.1) they are
`src/vfiokit/samples/lab/<name>.json` (`vfiokit groups --sample lab-<name>`) and
`tests/fixtures/lab/<name>.truth`; under another kernel K, `src/vfiokit/samples/lab/K/<name>.json`
(sample `lab-K-<name>`) and `tests/fixtures/lab/K/<name>.truth`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab import boot, fetch, initramfs
from lab.topologies import TOPOLOGIES, Topology
from vfiokit.sources.snapshot import dumps

FIXTURES = initramfs.REPO / "tests" / "fixtures" / "lab"
SAMPLES = initramfs.REPO / "src" / "vfiokit" / "samples" / "lab"


def fixtures_dir(kernel: fetch.Kernel) -> Path:
    return FIXTURES if kernel == fetch.DEFAULT else FIXTURES / kernel.name


def samples_dir(kernel: fetch.Kernel) -> Path:
    return SAMPLES if kernel == fetch.DEFAULT else SAMPLES / kernel.name


def sample_name(kernel: fetch.Kernel, topology: str) -> str:
    return f"lab-{topology}" if kernel == fetch.DEFAULT else f"lab-{kernel.name}-{topology}"


def check(result: boot.Result) -> str | None:
    """Why the captured groups differ from the guest kernel's listing, or None when they agree."""
    assert result.snapshot is not None and result.truth is not None
    captured = {n: sorted(m) for n, m in (json.loads(result.snapshot)["iommu_groups"] or {}).items()}
    truth = boot.parse_truth(result.truth)
    if captured != truth:
        return f"snapshot groups {captured} != kernel's listing {truth}"
    return None


def _log(line: str) -> None:
    print(f"lab: {line}", file=sys.stderr, flush=True)


def run(topos: list[Topology], workdir: Path, jobs: int | None = None, progress: bool = True,
        debug: bool = False, kernel: fetch.Kernel = fetch.DEFAULT) -> list[boot.Result]:
    """Fetch, build, and boot `topos` under `kernel`, at most `jobs` at a time (default: one per
    core, max 2)."""
    root = fetch.fetch()
    image = fetch.kernel_image(root, kernel)
    workdir = workdir / kernel.name
    workdir.mkdir(parents=True, exist_ok=True)
    shared = initramfs.base(root, kernel).read_bytes() + initramfs.project(workdir).read_bytes()

    def one(topo: Topology) -> boot.Result:
        initrd = workdir / f"{topo.name}.initrd"
        initrd.write_bytes(shared + initramfs.topology(topo, root, workdir, debug, kernel).read_bytes())
        result = boot.boot(topo, image, initrd, workdir, log=_log)
        initrd.unlink()
        if result.ok:
            result.error = check(result)
        if progress:
            state = "ok" if result.ok else f"FAILED: {result.error}"
            print(f"{kernel.name:4} {topo.name:32} {result.seconds:5.1f} s  {state}", file=sys.stderr, flush=True)
        return result

    jobs = jobs or min(2, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, topos))


def _undated(snapshot_text: str) -> dict:
    raw = json.loads(snapshot_text)
    raw["captured"].pop("at", None)
    return raw


def as_sample(topology: Topology, snapshot_text: str, kernel: fetch.Kernel = fetch.DEFAULT) -> str:
    """The guest's snapshot with the sample description `vfiokit samples` shows."""
    raw = json.loads(snapshot_text)
    iommu = {"intel": "Intel", "amd": "AMD"}[topology.iommu] + " IOMMU"
    if topology.iommu_off:
        iommu += " (switched off)"
    raw["sample"] = {"name": sample_name(kernel, topology.name),
                     "title": f"QEMU lab, Linux {kernel.name}, {iommu}: "
                              f"{topology.machine.teaches.split('.')[0]}",
                     "description": f"Captured as root by `vfiokit snapshot` inside a q35 guest (Debian's "
                                    f"kernel {kernel.release}) booted under QEMU with an emulated {iommu} "
                                    f"(python -m lab). {topology.machine.teaches}"
                                    + (f". Booted with {topology.kernel_args[0]}: the IOMMU is off, so the "
                                       f"kernel formed no groups (the snapshot a user takes before turning "
                                       f"the IOMMU on); {sample_name(kernel, topology.iommu_on_twin)} shows the groups "
                                       f"to come."
                                       if topology.iommu_off else "")}
    return dumps(raw)


def write_fixtures(result: boot.Result, kernel: fetch.Kernel = fetch.DEFAULT) -> None:
    """Write a boot's fixtures; a snapshot that differs only by its capture time is left alone."""
    assert result.snapshot is not None and result.truth is not None
    fixtures, samples = fixtures_dir(kernel), samples_dir(kernel)
    fixtures.mkdir(parents=True, exist_ok=True)
    samples.mkdir(parents=True, exist_ok=True)
    old = samples / f"{result.name}.json"
    new = as_sample(TOPOLOGIES[result.name], result.snapshot, kernel)
    if not old.exists() or _undated(old.read_text()) != _undated(new):
        old.write_text(new)
    (fixtures / f"{result.name}.truth").write_text(result.truth)


def _select(names: list[str]) -> list[Topology]:
    unknown = [n for n in names if n not in TOPOLOGIES]
    if unknown:
        raise SystemExit(f"lab: unknown topology {', '.join(unknown)} (see 'python -m lab list')")
    return [TOPOLOGIES[n] for n in names] if names else list(TOPOLOGIES.values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the topologies and what each one teaches")
    for name, what in (("run", "boot and check"), ("regen", "boot, check, rewrite the fixtures")):
        s = sub.add_parser(name, help=what)
        s.add_argument("names", nargs="*", metavar="NAME")
        s.add_argument("-k", "--kernel", action="append", choices=list(fetch.KERNEL_NAMES),
                       help="boot under this kernel only (repeatable; default: every kernel)")
        s.add_argument("-j", "--jobs", type=int, default=None, help="parallel boots (default: cores, max 2)")
        s.add_argument("--keep", action="store_true", help="keep the work folder (consoles, initrds)")
        s.add_argument("--debug", action="store_true", help="guests print dmesg etc. to their console log")
    args = p.parse_args(argv)
    if args.cmd == "list":
        for t in TOPOLOGIES.values():
            print(f"{t.name:32} {t.iommu:5}  {t.machine.teaches}")
        return 0
    if shutil.which(boot.QEMU) is None:
        raise SystemExit(f"lab: {boot.QEMU} not found (bash scripts/setup-debian.sh installs it)")
    topos = _select(args.names)
    workdir = Path(tempfile.mkdtemp(prefix="vfiokit-lab-"))
    start = time.monotonic()
    results = []
    for kernel in [fetch.KERNEL_NAMES[k] for k in args.kernel] if args.kernel else fetch.KERNELS:
        done = run(topos, workdir, args.jobs, debug=args.debug, kernel=kernel)
        if args.cmd == "regen":
            for r in done:
                if r.ok:
                    write_fixtures(r, kernel)
        results += done
    failed = [r for r in results if not r.ok]
    print(f"lab: {len(results) - len(failed)}/{len(results)} topologies ok in "
          f"{time.monotonic() - start:.0f} s", file=sys.stderr)
    if args.keep or args.debug or failed:
        print(f"lab: work folder kept: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
