"""What real Linux kernels (each of lab/fetch.py KERNELS, under QEMU, emulated Intel and AMD
IOMMUs) said about each lab topology, against what vfiokit makes of its own capture. No QEMU needed:
the captures are the committed captures `src/vfiokit/samples/lab/[K/]<name>.json` (`vfiokit
snapshot` run as root in the guest) and `tests/fixtures/lab/[K/]<name>.truth` (the guest's
`/sys/kernel/iommu_groups` listed by busybox alone), both rewritten by `python -m lab regen`.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from lab.__main__ import fixtures_dir, samples_dir
from lab.boot import parse_truth
from lab.fetch import KERNELS
from lab.topologies import TOPOLOGIES
from tests.conftest import cli
from tests.oracle import article_script
from vfiokit.model import PciAddress
from vfiokit.sources import snapshot, sysfs
from vfiokit.sources.tree import materialize

NAMES = sorted(TOPOLOGIES)
#: Every capture: the kernel's short name and the topology's, "6.1/t3-switch".
CAPTURES = [f"{k.name}/{n}" for k in KERNELS for n in NAMES]


def _fixture(capture: str) -> tuple[Path, dict[str, list[str]]]:
    kernel_name, name = capture.split("/")
    (kernel,) = (k for k in KERNELS if k.name == kernel_name)
    return (samples_dir(kernel) / f"{name}.json",
            parse_truth((fixtures_dir(kernel) / f"{name}.truth").read_text()))


@pytest.mark.parametrize("kernel", KERNELS, ids=[k.name for k in KERNELS])
def test_every_topology_has_its_fixtures_under_every_kernel(kernel):
    assert sorted(p.stem for p in samples_dir(kernel).glob("*.json")) == NAMES
    assert sorted(p.stem for p in fixtures_dir(kernel).glob("*.truth")) == NAMES
    for name in NAMES:  # each capture says which kernel took it, and with which IOMMU switch
        host = snapshot.load(samples_dir(kernel) / f"{name}.json").host
        assert host.kernel_release == kernel.release
        assert TOPOLOGIES[name].kernel_args[0] in (host.cmdline or "").split()


@pytest.mark.parametrize("name", CAPTURES)
def test_captured_groups_are_the_kernels(name):
    path, truth = _fixture(name)
    raw = snapshot.load_raw(path)
    assert raw["captured"]["as_root"] is True
    assert {n: sorted(m) for n, m in (raw["iommu_groups"] or {}).items()} == truth
    assert (raw["iommu_groups"] is None) == TOPOLOGIES[path.stem].iommu_off
    # Every grouped device was captured, with its full (4096-byte) PCIe config space where it
    # has one, so port types and ACS are known.
    top = snapshot.load(path)
    assert {str(a) for g in top.groups or () for a in g.members} <= {str(d.address) for d in top.devices}
    assert not [n for n in top.notes if "unreadable" in n]


@pytest.mark.parametrize("name", CAPTURES)
def test_groups_command_shows_the_kernels_groups(name):
    path, truth = _fixture(name)
    r = cli("groups", "--snapshot", str(path))
    if TOPOLOGIES[path.stem].iommu_off:  # no group, and the switch on the command line named
        assert r.code == 5 and not r.out
        assert f"the kernel command line turns it off ({TOPOLOGIES[path.stem].kernel_args[0]})" in r.err
        return
    assert r.code == 0, r.err
    shown: dict[str, list[str]] = {}
    section = "none"
    for line in r.out.splitlines():
        if m := re.match(r"IOMMU group (\d+) ", line):
            section = m.group(1)
        elif not line.startswith("  "):
            section = "ungrouped"  # the list of devices that are in no group
        elif m := re.match(r"  ([0-9a-f:.]+) ", line):
            shown.setdefault(section, []).append(str(PciAddress.parse(m.group(1))))
    ungrouped = sorted(shown.pop("ungrouped", []))
    assert {n: sorted(m) for n, m in shown.items()} == truth
    # What the kernel left out of every group is listed apart: the AMD IOMMU's own function.
    captured = {str(d.address) for d in snapshot.load(path).devices}
    assert ungrouped == sorted(captured - {a for m in truth.values() for a in m})


@pytest.mark.parametrize("name", CAPTURES)
def test_seed_format_is_the_articles_script_over_the_captured_tree(name, tmp_path):
    path, truth = _fixture(name)
    tree = materialize(snapshot.load_raw(path), tmp_path / "tree")
    expected = article_script(tree)
    # The oracle really listed the machine: one header per group, one lspci line per member.
    assert expected.count("IOMMU Group ") == len(truth)
    assert expected.count("\n\t") == sum(len(m) for m in truth.values())
    assert cli("groups", "--snapshot", str(path), "--format", "seed").out == expected


@pytest.mark.parametrize("name", CAPTURES)
def test_captured_tree_reads_back_to_the_same_model(name, tmp_path):
    path, _ = _fixture(name)
    loaded = snapshot.load(path)
    read = sysfs.read_topology(materialize(snapshot.load_raw(path), tmp_path / "tree"))
    assert read.devices == loaded.devices
    assert read.groups == loaded.groups
    for field in ("kernel_release", "cmdline", "iommu_units"):
        assert getattr(read.host, field) == getattr(loaded.host, field)
    assert replace(read, source="", host=loaded.host, notes=(), host_usage=None) == replace(
        loaded, source="", notes=(), host_usage=None)


HOSTUSE = [c for c in CAPTURES if c.endswith(("/hostuse", "/hostuse-amd"))]


@pytest.mark.parametrize("name", HOSTUSE)
def test_hostuse_guest_had_drivers_bound_and_a_boot_vga(name):
    top = snapshot.load(_fixture(name)[0])
    (vga,) = [d for d in top.devices if (d.vendor_id, d.device_id) == (0x1234, 0x1111)]
    assert vga.boot_vga is True and vga.driver == "bochs-drm"
    # The four endpoints below the switch (the ICH9 SATA at 00:1f.2 is on the root bus and also
    # binds ahci) have their drivers and sit in one group, with the switch's five ports and the
    # non-ACS root port above them.
    below = [d for d in top.devices if d.address.bus >= 3]
    assert sorted(d.driver for d in below) == ["ahci", "bochs-drm", "e1000e", "nvme"]
    (group,) = {d.iommu_group for d in below}
    members = top.by_group[group].members
    assert len(members) == 10 and PciAddress.parse("00:02.0") in members


@pytest.mark.parametrize("name", HOSTUSE)
def test_hostuse_snapshot_holds_what_the_host_uses(name):
    """The guest's own `vfiokit snapshot` gathered the host's use of the NVMe (mounted), the
    e1000e (below the default-route bridge) and the VGA (console), by their PCI addresses."""
    usage = snapshot.load_raw(_fixture(name)[0])["host_usage"]
    assert usage is not None
    text = json.dumps(usage)
    for address in ("0000:03:00.0", "0000:04:00.0", "0000:05:00.0"):
        assert address in text
    assert "0000:06:00.0" not in text  # the AHCI controller to pass through: nothing on it


def _scripted_boots(monkeypatch, consoles: list[str]) -> list[str]:
    """Replace one QEMU run by the next console of `consoles` (a failed boot each, but the last
    when it is empty): the early timer panic cannot be caused on demand under a real QEMU."""
    from lab import boot

    runs: list[str] = []

    def once(topo, kernel, initrd, workdir, timeout):
        console = consoles[len(runs)]
        runs.append(console)
        return boot.Result(topo.name, 1.0, error="qemu exited with 1" if console else None, console=console)

    monkeypatch.setattr(boot, "_boot_once", once)
    return runs


def test_the_early_timer_panic_is_retried_once_and_logged(monkeypatch, tmp_path):
    from lab import boot

    panic = "Kernel panic - not syncing: IO-APIC + timer doesn't work!  Boot with apic=debug\n" \
            "..TIMER: vector=0x30 apic1=0 pin1=2 apic2=-1 pin2=-1\n" \
            "timer doesn't work through Interrupt-remapped IO-APIC"
    runs = _scripted_boots(monkeypatch, [panic, ""])
    logged: list[str] = []
    r = boot.boot(TOPOLOGIES["t3-switch"], tmp_path / "k", tmp_path / "i", tmp_path, log=logged.append)
    assert len(runs) == 2 and r.ok
    assert logged == [r.retried] and "t3-switch: the kernel panicked early" in logged[0]
    # Twice in a row fails: one retry only.
    runs = _scripted_boots(monkeypatch, [panic, panic])
    r = boot.boot(TOPOLOGIES["t3-switch"], tmp_path / "k", tmp_path / "i", tmp_path, log=logged.append)
    assert len(runs) == 2 and not r.ok


def test_any_other_boot_failure_fails_at_once(monkeypatch, tmp_path):
    from lab import boot

    runs = _scripted_boots(monkeypatch, ["Kernel panic - not syncing: VFS: Unable to mount root fs", ""])
    r = boot.boot(TOPOLOGIES["t3-switch"], tmp_path / "k", tmp_path / "i", tmp_path, log=print)
    assert len(runs) == 1 and not r.ok and r.retried is None
