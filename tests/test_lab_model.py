"""The group model against the QEMU lab's captures of hosts booted with the IOMMU switched off
(`NAME-iommu-off`, `NAME-amd-iommu-off`): what it predicts from such a snapshot must be what the
same kernel formed when the same machine booted with the IOMMU on (the `.truth` of `NAME`), group
numbers included, under every kernel of lab/fetch.py. No QEMU needed (committed captures).
"""

from __future__ import annotations

import json

import pytest

from lab.__main__ import fixtures_dir, sample_name, samples_dir
from lab.boot import parse_truth
from lab.fetch import KERNELS
from lab.topologies import TOPOLOGIES
from tests.conftest import cli
from vfiokit.analyses.grouping import KERNEL_RULES, KernelFacts, acs_ctrl, predict_groups, rules_for
from vfiokit.model import PciAddress
from vfiokit.sources import snapshot

OFF = sorted(n for n, t in TOPOLOGIES.items() if t.iommu_off)
CASES = [(k, n) for k in KERNELS for n in OFF]
IDS = [f"{k.name}/{n}" for k, n in CASES]


def _predicted(kernel, name) -> dict[str, list[str]]:
    top = snapshot.load(samples_dir(kernel) / f"{name}.json")
    assert top.groups is None  # the kernel formed none: the IOMMU was off
    return {str(g.number): sorted(str(a) for a in g.members) for g in predict_groups(top, None)}


def _truth(kernel, name) -> dict[str, list[str]]:
    twin = TOPOLOGIES[name].iommu_on_twin
    return parse_truth((fixtures_dir(kernel) / f"{twin}.truth").read_text())


@pytest.mark.parametrize(("kernel", "name"), CASES, ids=IDS)
def test_groups_predicted_with_the_iommu_off_are_the_kernels_once_it_is_on(kernel, name):
    assert _predicted(kernel, name) == _truth(kernel, name)


@pytest.mark.parametrize(("kernel", "name"), CASES, ids=IDS)
def test_acs_control_predicted_with_the_iommu_off_is_what_the_kernel_wrote(kernel, name):
    """Every ACS control register the model expects once the IOMMU is on equals the one read in
    the capture of the same machine booted with it on: 0x1d on the port disable_acs_redir does
    not name; on the two it names 0x11 under 6.1 and 0x00 under 7.3 (since 6.11 the named port
    starts again from the firmware's value, KernelRules.acs_redir_from_firmware). With
    intel_iommu=off the capture reads 0 everywhere; amd_iommu=off still has the kernel enable ACS
    (drivers/iommu/amd/init.c detect_ivrs calls pci_request_acs before the switch is read)."""
    off = snapshot.load(samples_dir(kernel) / f"{name}.json")
    on = snapshot.load(samples_dir(kernel) / f"{TOPOLOGIES[name].iommu_on_twin}.json").by_address
    facts = KernelFacts.of(off)
    ports = [d for d in off.devices if d.acs is not None]
    assert len(ports) == 3
    assert {str(d.address): acs_ctrl(d, facts, off) for d in ports} == {
        str(d.address): on[d.address].acs.ctrl for d in ports}
    assert on[PciAddress.parse("00:02.1")].acs.ctrl == 0x1D
    assert on[PciAddress.parse("00:02.0")].acs.ctrl == (0x00 if facts.rules.acs_redir_from_firmware else 0x11)


@pytest.mark.parametrize("kernel", KERNELS, ids=[k.name for k in KERNELS])
def test_disable_acs_redir_applies_again_after_the_kernel_enables_acs(kernel):
    """pci=disable_acs_redir=0000:00:02.0;0000:00:03.0 on a host whose IOMMU is off: the kernel's
    pci_enable_acs will turn each port's ACS on, then pci_disable_acs_redir clears Request and
    Completion Redirect again on the two named ports, so their endpoints stay in their groups;
    the port at 00:02.1 keeps full ACS and its endpoint stands alone."""
    top = snapshot.load(samples_dir(kernel) / "disable-acs-redir-iommu-off.json")
    assert "pci=disable_acs_redir=0000:00:02.0;0000:00:03.0" in (top.host.cmdline or "")
    group = {a: g.number for g in predict_groups(top, None) for a in g.members}
    port, endpoint = PciAddress.parse("00:02.0"), PciAddress.parse("01:00.0")
    assert group[port] == group[endpoint]
    assert group[PciAddress.parse("00:03.0")] == group[PciAddress.parse("03:00.0")]
    assert group[PciAddress.parse("00:02.1")] != group[PciAddress.parse("02:00.0")]
    # What a user sees: simulate keeps the endpoint with its port, and --alone does not call it
    # "already alone".
    r = cli("simulate", "--sample", sample_name(kernel, "disable-acs-redir-iommu-off"),
            "--acs-override", "none", "--json")
    data = json.loads(r.out)
    assert any(g["devices"] == ["0000:00:02.0", "0000:01:00.0"] for g in data["predicted"])
    r = cli("simulate", "--sample", sample_name(kernel, "disable-acs-redir-iommu-off"), "--alone", "01:00.0")
    assert "already alone" not in r.out + r.err
    assert "no ACS override can make it alone" in r.out
    # The register as read (0, the IOMMU is off) and, where the kernel will change it, as it will be.
    later = "CTRL 0x0000 now, 0x0011 once the IOMMU is on" in r.out
    assert later == (not KernelFacts.of(top).rules.acs_redir_from_firmware)


@pytest.mark.parametrize("kernel", KERNELS, ids=[k.name for k in KERNELS])
def test_the_amd_iommus_own_function_takes_no_group_with_amd_iommu_off(kernel):
    """amd_iommu=off: the snapshot has the AMD IOMMU's function (1022:0008, class 0806) but no
    groups; the kernel, once the IOMMU is on, leaves that function out (init_iommu_one), so it
    takes no group number and every later device keeps the kernel's number."""
    top = snapshot.load(samples_dir(kernel) / "disable-acs-redir-amd-iommu-off.json")
    assert "amd_iommu=off" in (top.host.cmdline or "").split()
    (iommu,) = [d for d in top.devices if (d.vendor_id, d.device_id) == (0x1022, 0x0008)]
    assert iommu.class_id == 0x0806
    predicted = {a for g in predict_groups(top, None) for a in g.members}
    assert iommu.address not in predicted
    truth = _truth(kernel, "disable-acs-redir-amd-iommu-off")
    assert str(iommu.address) not in {a for m in truth.values() for a in m}


def test_kernel_rules_are_keyed_by_release():
    """Each lab kernel falls in an entry of the versioned table; a release before
    pci=disable_acs_redir= existed (4.19) does not apply it."""
    assert rules_for((6, 1)).acs_redir_from_firmware is False
    assert rules_for((7, 3)) is rules_for((6, 11)) is KERNEL_RULES[-1]
    assert rules_for((4, 14)).disable_acs_redir is False
    assert rules_for(None) is KERNEL_RULES[-1]
