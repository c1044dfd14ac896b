"""The QEMU lab, live: boot real kernels now and check that each still forms the groups its
committed fixtures hold, and that vfiokit's capture in the guest agrees with it.

Every capture of every kernel (lab/fetch.py KERNELS) is checked without QEMU by
tests/test_lab_fixtures.py and tests/test_lab_model.py; `python -m lab run` boots them all
(about 2 x 26 boots, several minutes on 2 cores). Here, to keep CI within a few minutes, each
kernel boots LIVE: one machine per kind of rule the fixtures rest on (a switch below an ACS port,
the host-usage machine under the AMD IOMMU with its NVMe mounted, disable_acs_redir with the
IOMMU on and off under both IOMMUs). `VFIOKIT_SKIP_LAB=1` skips this file outside CI, never in CI.
"""

from __future__ import annotations

import json

import pytest

from lab.__main__ import fixtures_dir, samples_dir
from lab.boot import parse_truth
from lab.fetch import KERNELS
from lab.topologies import TOPOLOGIES

pytestmark = pytest.mark.lab

LIVE = ("t3-switch", "hostuse-amd", "disable-acs-redir", "disable-acs-redir-iommu-off",
        "disable-acs-redir-amd-iommu-off")
CASES = [(k, n) for k in KERNELS for n in LIVE]


@pytest.fixture(scope="module")
def fresh(lab_qemu, tmp_path_factory):
    from lab.__main__ import run

    work = tmp_path_factory.mktemp("lab")
    return {(k.name, r.name): r for k in KERNELS
            for r in run([TOPOLOGIES[n] for n in LIVE], work, progress=False, kernel=k)}


def _groups(snapshot_text: str) -> dict[str, list[str]]:
    return {n: sorted(m) for n, m in (json.loads(snapshot_text)["iommu_groups"] or {}).items()}


@pytest.mark.parametrize(("kernel", "name"), CASES, ids=[f"{k.name}/{n}" for k, n in CASES])
def test_fresh_boot_matches_the_kernel_and_the_fixture(fresh, kernel, name):
    r = fresh[(kernel.name, name)]
    assert r.error is None, f"{r.error}\n{r.console[-2000:]}"
    truth = parse_truth(r.truth)
    assert _groups(r.snapshot) == truth
    assert truth == parse_truth((fixtures_dir(kernel) / f"{name}.truth").read_text())
    assert _groups((samples_dir(kernel) / f"{name}.json").read_text()) == truth
    assert json.loads(r.snapshot)["host"]["kernel_release"] == kernel.release


@pytest.mark.parametrize("kernel", KERNELS, ids=[k.name for k in KERNELS])
def test_hostuse_guest_lives_on_its_group(fresh, kernel):
    """The state a host-usage judge must find was really there when the snapshot ran, under the
    AMD IOMMU too: the NVMe came up and holds a mounted filesystem."""
    state = fresh[(kernel.name, "hostuse-amd")].state
    assert state is not None
    assert "/dev/nvme0n1 /mnt/data ext2" in state
    assert "default via 192.0.2.1 dev vmbr0" in state
    assert "bridge vmbr0 ports: eth0" in state


@pytest.mark.parametrize("kernel", KERNELS, ids=[k.name for k in KERNELS])
def test_bind_moves_a_real_device_to_vfio_pci_and_back(fresh, kernel):
    """`vfiokit bind` / `unbind` run in the t3-switch guest on an e1000e, against the real kernel's
    sysfs (lab/topologies.py BIND_STEPS print what the guest's busybox saw after each)."""
    console = fresh[(kernel.name, "t3-switch")].console
    said = [ln.split("lab-bind: ", 1)[1].strip() for ln in console.splitlines() if ln.startswith("lab-bind: ")]
    assert said[:1] == ["bind rc=0"], console[-3000:]
    after_bind = said[1].split()
    assert after_bind[:3] == ["after", "bind:", "driver=vfio-pci"]
    assert after_bind[3] == "override=vfio-pci"
    assert after_bind[4].startswith("dev-vfio-group=/dev/vfio/")  # the group's device node exists
    assert said[2:4] == ["unbind rc=0", "after unbind: driver=e1000e override=(null)"]
    # bind --persistent's boot script, run by busybox: the next probe gives the e1000e to vfio-pci
    assert said[4:] == ["hook rc=0", "after hook: override=vfio-pci driver=vfio-pci"]


#: What doctor must say of each live guest. Kernel 7.3's AMD IOMMU driver finds no southbridge
#: IOAPIC in QEMU's IVRS and turns interrupt remapping off ("AMD-Vi: Disabling interrupt
#: remapping", its own log line): doctor names it as the failure; 6.1 enables it.
DOCTOR_CASES = [(k, n, p) for k in KERNELS for n, p in (
    ("disable-acs-redir", "DMAR-IR: Enabled IRQ remapping"),
    ("hostuse-amd", "AMD-Vi: Disabling interrupt remapping" if k.name == "7.3"
     else "AMD-Vi: Interrupt remapping enabled"),
    ("disable-acs-redir-iommu-off", "intel_iommu=off"),
    ("disable-acs-redir-amd-iommu-off", "amd_iommu=off"))]


@pytest.mark.parametrize(("kernel", "name", "said"), DOCTOR_CASES,
                         ids=[f"{k.name}/{n}" for k, n, _ in DOCTOR_CASES])
def test_doctor_on_the_fresh_guest_says_what_it_had(fresh, tmp_path, kernel, name, said):
    """doctor on the snapshot the real guest kernel just gave: interrupt remapping from the kernel's
    own line under intel-iommu/amd-iommu with intremap=on; with the IOMMU switched off on the
    command line, that parameter named as the cause and the kernel IOMMU found inactive."""
    from tests.conftest import cli

    r = fresh[(kernel.name, name)]
    assert r.error is None and r.snapshot
    snap = tmp_path / "guest.json"
    snap.write_text(r.snapshot)
    report = json.loads(cli("doctor", "--snapshot", str(snap), "--json").out)
    checks = {c["id"]: c for c in report["checks"] if c["subject"] is None}
    if name.endswith("iommu-off"):
        assert checks["kernel.iommu_off"]["status"] == "fail" and said in checks["kernel.iommu_off"]["fix"]
        assert checks["kernel.iommu"]["status"] == "fail"
    else:
        irq = checks["kernel.irq_remap"]
        assert irq["status"] == ("fail" if "Disabling" in said else "ok") and said in irq["evidence"]
        assert checks["kernel.iommu"]["status"] == "ok"
