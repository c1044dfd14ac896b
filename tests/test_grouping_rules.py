"""The grouping rules one at a time, on hand-made machines (synthetic.Spec: real config-space bytes
with a PCIe capability and ACS), with and without an ACS override."""

from __future__ import annotations

import pytest

from vfiokit.analyses.alone import make_alone
from vfiokit.analyses.grouping import parse_override, predict_groups
from vfiokit.errors import BadInput
from vfiokit.model import (
    PCIE_DOWNSTREAM_PORT,
    PCIE_ENDPOINT,
    PCIE_ROOT_PORT,
    PCIE_TO_PCI_BRIDGE,
    PCIE_UPSTREAM_PORT,
    PciAddress,
    Topology,
)
from vfiokit.sources.capture import build_topology
from vfiokit.sources.synthetic import Spec, capture_of

ACS_ON = (0x1F, 0x1D)  # SV TB RR CR UF capable, SV RR CR UF enabled (what the kernel sets)
ACS_OFF = (0x1F, 0x00)  # the capability is there, switched off


def machine(*specs: Spec, host: dict | None = None) -> Topology:
    return build_topology(capture_of(list(specs), host=host), "test machine")


def rp(addr: str, bus: int, acs=ACS_ON, vendor=0x1022, device=0x1483, **kw) -> Spec:
    return Spec(addr, vendor, device, 0x060400, pcie_type=PCIE_ROOT_PORT, acs=acs, secondary_bus=bus, **kw)


def ep(addr: str, parent: str | None, vendor=0x10EC, device=0x8168, pcie_type=PCIE_ENDPOINT, **kw) -> Spec:
    return Spec(addr, vendor, device, 0x020000, parent=parent, pcie_type=pcie_type, **kw)


def grouping(top: Topology, override: str = "none") -> list[list[str]]:
    return [[a.short for a in g.members] for g in predict_groups(top, parse_override(override))]


def together(top: Topology, override: str, *addrs: str) -> bool:
    groups = grouping(top, override)
    return any(set(addrs) <= set(g) for g in groups)


def alone(top: Topology, override: str, addr: str) -> bool:
    return [addr] in grouping(top, override)


# --- the override's own semantics ------------------------------------------------------------------

def _switch(dp1_acs, dp2_acs) -> Topology:
    # Read from a running host (IOMMU on, so CTRL is what the kernel left: it could not switch
    # 02:00.0's ACS on, e.g. pci=disable_acs_redir= or read-only bits); the groups are the
    # kernel's, which the prediction is about to be checked against.
    return machine(
        rp("00:01.0", 1, subordinate_bus=4, group=0),
        Spec("01:00.0", 0x1022, 0x43E9, 0x060400, parent="00:01.0", pcie_type=PCIE_UPSTREAM_PORT,
             secondary_bus=2, subordinate_bus=4, group=1),
        Spec("02:00.0", 0x1022, 0x43EA, 0x060400, parent="01:00.0", pcie_type=PCIE_DOWNSTREAM_PORT,
             acs=dp1_acs, secondary_bus=3, group=2),
        Spec("02:01.0", 0x1022, 0x43EA, 0x060400, parent="01:00.0", pcie_type=PCIE_DOWNSTREAM_PORT,
             acs=dp2_acs, secondary_bus=4, group=3),
        ep("03:00.0", "02:00.0", group=2),
        ep("04:00.0", "02:01.0", group=3),
    )


def test_a_port_whose_acs_capability_is_switched_off_is_not_overridden():
    top = _switch(dp1_acs=ACS_OFF, dp2_acs=None)
    assert together(top, "none", "02:00.0", "03:00.0")
    assert together(top, "none", "02:01.0", "04:00.0")
    # downstream isolates the port without a capability, never the one with it switched off
    assert together(top, "downstream", "02:00.0", "03:00.0")
    assert alone(top, "downstream", "04:00.0")
    advice = make_alone(top, PciAddress.parse("03:00.0"))
    assert advice.override is None and any("ACS capability" in b for b in advice.blockers)


def test_a_host_booted_without_iommu_is_predicted_with_the_acs_the_kernel_will_enable():
    # No groups: CTRL still holds the firmware's zeros; the kernel writes CAP & (SV|RR|CR|UF) as
    # soon as an IOMMU asks for ACS (pci_std_enable_acs), so the port will isolate.
    top = machine(rp("00:01.0", 1, acs=ACS_OFF), ep("01:00.0", "00:01.0"))
    assert top.groups is None
    assert alone(top, "none", "01:00.0")


def test_conventional_pci_is_never_overridden_behind_a_pcie_to_pci_bridge():
    top = machine(
        rp("00:1c.0", 1, subordinate_bus=2),
        Spec("01:00.0", 0x104C, 0x8240, 0x060400, parent="00:1c.0", pcie_type=PCIE_TO_PCI_BRIDGE,
             secondary_bus=2),
        Spec("02:00.0", 0x1102, 0x0002, 0x040100, parent="01:00.0"),  # conventional PCI sound card
        Spec("02:01.0", 0x10EC, 0x8139, 0x020000, parent="01:00.0"),  # conventional PCI NIC
    )
    for override in ("none", "downstream,multifunction", "id:1102:0002,id:104c:8240"):
        # every device behind the bridge reaches the IOMMU as the bridge: one group with it
        assert together(top, override, "01:00.0", "02:00.0", "02:01.0"), override
    advice = make_alone(top, PciAddress.parse("02:00.0"))
    assert advice.override is None
    assert any("PCIe-to-PCI bridge" in b for b in advice.blockers)


def test_conventional_multifunction_functions_stay_together():
    top = machine(
        Spec("00:1f.0", 0x8086, 0x2918, 0x060100, multifunction=True),
        Spec("00:1f.2", 0x8086, 0x2922, 0x010601, multifunction=True),
    )
    assert together(top, "downstream,multifunction", "00:1f.0", "00:1f.2")


def test_id_beats_the_port_type_rules():
    top = machine(
        rp("00:01.0", 1, acs=None, vendor=0x1022, device=0x1453),
        ep("01:00.0", "00:01.0"),
    )
    assert together(top, "none", "00:01.0", "01:00.0")
    assert together(top, "multifunction", "00:01.0", "01:00.0")  # a root port is not its kind
    assert alone(top, "id:1022:1453", "01:00.0")  # named by id: isolating whatever its type
    assert alone(top, "downstream", "01:00.0")
    # an id matches a multifunction endpoint without 'multifunction' too
    top = machine(rp("00:01.0", 1), ep("01:00.0", "00:01.0", device=0x8125, multifunction=True),
                  ep("01:00.1", "00:01.0", device=0x8126, multifunction=True))
    assert alone(top, "id:10ec:8125", "01:00.0") and alone(top, "id:10ec:8125", "01:00.1")
    assert together(top, "downstream", "01:00.0", "01:00.1")


PCH_PORT = dict(vendor=0x8086, device=0x1C10, acs=None)


def test_intel_pch_root_ports_follow_their_quirk_not_the_override():
    def pch(dmesg):
        return machine(rp("00:1c.0", 1, **PCH_PORT), ep("01:00.0", "00:1c.0"),
                       host={"dmesg": dmesg})

    # The quirk (pci_quirk_intel_pch_acs) isolates when the kernel enabled the PCH's controls...
    assert alone(pch(["pci 0000:00:1c.0: Intel PCH root port ACS workaround enabled"]), "none", "01:00.0")
    # ...and says no when it could not: checked before the override, so no override changes that.
    failed = pch(["pci 0000:00:1c.0: Failed to enable Intel PCH ACS quirk"])
    for override in ("none", "downstream", "id:8086:1c10", "downstream,multifunction"):
        assert together(failed, override, "00:1c.0", "01:00.0"), override
    advice = make_alone(failed, PciAddress.parse("01:00.0"))
    assert advice.override is None and any("Intel PCH root port" in b for b in advice.blockers)


def test_a_multifunction_slot_without_acs_shares_a_group_until_multifunction():
    top = machine(rp("00:01.0", 1), ep("01:00.0", "00:01.0", multifunction=True),
                  ep("01:00.1", "00:01.0", device=0x8169, multifunction=True))
    assert together(top, "none", "01:00.0", "01:00.1")
    assert together(top, "downstream", "01:00.0", "01:00.1")
    assert alone(top, "multifunction", "01:00.0") and alone(top, "multifunction", "01:00.1")
    # a function that has ACS and enables it leaves the slot's group on its own
    top = machine(rp("00:01.0", 1), ep("01:00.0", "00:01.0", multifunction=True, acs=ACS_ON),
                  ep("01:00.1", "00:01.0", device=0x8169, multifunction=True))
    assert alone(top, "none", "01:00.0") and alone(top, "none", "01:00.1")


def test_marvell_function_1_dma_alias_keeps_both_functions_together():
    top = machine(rp("00:01.0", 1),
                  ep("01:00.0", "00:01.0", vendor=0x1B4B, device=0x9128, multifunction=True),
                  ep("01:00.1", "00:01.0", vendor=0x1B4B, device=0x91A4, multifunction=True))
    # 'multifunction' would split an ordinary slot; function 0 issuing DMA as function 1
    # (quirk_dma_func1_alias) keeps them in one group whatever the override.
    assert together(top, "downstream,multifunction", "01:00.0", "01:00.1")
    advice = make_alone(top, PciAddress.parse("01:00.0"))
    assert advice.override is None and any("DMA aliases" in b for b in advice.blockers)
    # the same pair with a vendor that has no alias quirk splits
    plain = machine(rp("00:01.0", 1), ep("01:00.0", "00:01.0", vendor=0x1B21, device=0x0612, multifunction=True),
                    ep("01:00.1", "00:01.0", vendor=0x1B21, device=0x0613, multifunction=True))
    assert alone(plain, "multifunction", "01:00.0")


def test_port_types_are_corrected_like_set_pcie_port_type():
    # A "downstream port" right below a root port is really an upstream port: single function,
    # so it isolates, and the endpoint behind it gets a group of its own.
    top = machine(rp("00:01.0", 1, subordinate_bus=2),
                  Spec("01:00.0", 0x1B21, 0x1182, 0x060400, parent="00:01.0", pcie_type=PCIE_DOWNSTREAM_PORT,
                       secondary_bus=2),
                  ep("02:00.0", "01:00.0"))
    assert top.by_address[PciAddress.parse("01:00.0")].pcie_type == PCIE_UPSTREAM_PORT
    assert alone(top, "none", "02:00.0")
    # An "upstream port" below an upstream port is really a downstream port: without ACS it
    # does not isolate, until 'downstream' covers it.
    top = machine(rp("00:01.0", 1, subordinate_bus=3),
                  Spec("01:00.0", 0x1B21, 0x1182, 0x060400, parent="00:01.0", pcie_type=PCIE_UPSTREAM_PORT,
                       secondary_bus=2, subordinate_bus=3),
                  Spec("02:00.0", 0x1B21, 0x1182, 0x060400, parent="01:00.0", pcie_type=PCIE_UPSTREAM_PORT,
                       secondary_bus=3),
                  ep("03:00.0", "02:00.0"))
    assert top.by_address[PciAddress.parse("02:00.0")].pcie_type == PCIE_DOWNSTREAM_PORT
    assert together(top, "none", "02:00.0", "03:00.0")
    assert alone(top, "downstream", "03:00.0")


# --- numbering and the devices the kernel leaves out ----------------------------------------------

def test_groups_are_numbered_bus_by_bus_depth_first():
    top = machine(rp("00:01.0", 1), rp("00:02.0", 2), ep("01:00.0", "00:01.0"), ep("02:00.0", "00:02.0"),
                  Spec("00:1f.0", 0x1022, 0x790E, 0x060100))
    numbers = {g.members[0].short: g.number for g in predict_groups(top, None)}
    # all of bus 0 first (00:1f.0 included), then bus 1, then bus 2
    assert numbers == {"00:01.0": 0, "00:02.0": 1, "00:1f.0": 2, "01:00.0": 3, "02:00.0": 4}


def test_devices_an_amd_iommu_leaves_out_stay_ungrouped_and_take_no_number():
    top = machine(Spec("00:00.0", 0x1022, 0x1480, 0x060000),  # no group (IVRS does not cover it)
                  Spec("00:00.2", 0x1022, 0x1481, 0x080600),  # the IOMMU itself
                  rp("00:01.1", 1, group=0), ep("01:00.0", "00:01.1", group=1))
    groups = predict_groups(top, parse_override("downstream,multifunction"))
    assert [(g.number, [a.short for a in g.members]) for g in groups] == [(0, ["00:01.1"]), (1, ["01:00.0"])]


def test_sriov_virtual_functions_are_numbered_after_every_boot_device():
    raw = capture_of([rp("00:01.0", 1), ep("01:00.0", "00:01.0", vendor=0x8086, device=0x1572),
                      Spec("01:00.1", 0x8086, 0x154C, 0x020000, parent="00:01.0", pcie_type=PCIE_ENDPOINT),
                      rp("00:02.0", 2), ep("02:00.0", "00:02.0")])
    raw["devices"]["0000:01:00.1"]["links"]["physfn"] = "0000:01:00.0"
    top = build_topology(raw, "sr-iov machine")
    numbers = {g.members[0].short: g.number for g in predict_groups(top, None)}
    # VFs appear when sriov_numvfs is written, after boot; a VF is never "multifunction"
    assert numbers["01:00.1"] == max(numbers.values()) and numbers["02:00.0"] < numbers["01:00.1"]
    assert alone(top, "none", "01:00.1")


# --- parsing -----------------------------------------------------------------------------------------

def test_parse_override_accepts_the_documented_forms():
    assert str(parse_override("downstream,multifunction")) == "downstream,multifunction"
    assert str(parse_override("pcie_acs_override=id:10de:1430,downstream")) == "downstream,id:10de:1430"
    assert parse_override("none").empty
    ids = ",".join(f"id:8086:{i:04x}" for i in range(15))
    assert len(parse_override(ids).ids) == 15


@pytest.mark.parametrize(("text", "says"), [
    ("downstreem", "'downstreem' is not an option"),
    ("id:10de", "'id:10de' is not an option"),
    ("id:10de:zzzz", "is not an option"),
    ("none,downstream", "'none' cannot be combined"),
    (",".join(f"id:8086:{i:04x}" for i in range(16)), "at most 15"),
    ("", "empty ACS override"),
])
def test_parse_override_refuses_with_one_clear_line(text, says):
    with pytest.raises(BadInput, match=says):
        parse_override(text)
