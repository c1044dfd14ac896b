"""`vfiokit check`: verdicts, exit codes, JSON, bad input; the article's board; the lab's capture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import cli
from tests.hostfacts import B550_LIKE, HostTree
from vfiokit.analyses.passthrough import Level, judge, parse_targets
from vfiokit.errors import BadInput, DeviceNotFound, ExitCode
from vfiokit.model import PCIE_ENDPOINT, PCIE_ROOT_PORT
from vfiokit.sources.capture import build_topology
from vfiokit.sources.synthetic import Spec, capture_of

LAB = Path(__file__).parents[1] / "src/vfiokit/samples/lab/hostuse.json"


def verdict_line(r) -> str:
    """The verdict: the line after the one naming the source (every source here is not this host)."""
    header, verdict = r.out.splitlines()[:2]
    assert header.startswith(("sample ", "snapshot ", "tree ", "listing ")), header
    return verdict


def snapshot_of(tmp_path: Path, specs: list[Spec], host_usage: dict | None = None, **kw) -> str:
    raw = capture_of(specs, **kw)
    if host_usage is not None:
        raw["host_usage"] = host_usage
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(raw))
    return str(path)


# -- the article's board ----------------------------------------------------------------------

def test_article_marvell_takes_the_display_and_the_network():
    r = cli("check", "07:00.0", "--sample", "asus-tuf-b550-plus")
    assert r.code == 11, r.err
    assert r.out.splitlines()[0] == "sample asus-tuf-b550-plus (not this host)"
    verdict = verdict_line(r)
    assert verdict.startswith("Verdict: unsafe - passing 07:00.0 takes the display (04:00.0, boot VGA)")
    assert "the network (" in verdict and "06:00.0" in verdict and "0a:00.0" in verdict
    for member in ("02:00.0", "02:00.1", "04:00.1", "08:00.0"):
        assert f"{member}" in verdict  # everything else that leaves is named too
    # bridges are said to stay with the host, not listed as losses
    assert "03:00.0" not in verdict and "bridges, which Proxmox leaves bound to the host" in r.out


def test_article_with_the_hosts_facts_names_the_route_and_the_console():
    """The bundled board carries what its owner's Proxmox uses: root on the M.2 NVMe of group 14,
    vmbr0 with the default route on the RTL8125, the extra RTL8111 up, the console on the Quadro."""
    r = cli("check", "07:00.0", "--sample", "asus-tuf-b550-plus")
    assert r.code == 11
    assert verdict_line(r).startswith(
        "Verdict: unsafe - passing 07:00.0 takes the display (04:00.0, boot VGA) and the network "
        "(06:00.0, interface enp6s0 (up); 0a:00.0, default route (ipv4) via vmbr0 -> enp10s0) from the host "
        "(IOMMU group 15); also ")
    assert "the root file system" not in r.out  # the NVMe under / is alone in group 14
    assert verdict_line(cli("check", "01:00.0", "--sample", "asus-tuf-b550-plus")).startswith(
        "Verdict: unsafe - passing 01:00.0 takes the root file system (01:00.0, / (root) is on dm-1 -> "
        "nvme0n1p3 -> nvme0n1 -> nvme0)")


def test_article_json_has_members_with_roles():
    r = cli("check", "0000:07:00.0", "--sample", "asus-tuf-b550-plus", "--json")
    data = json.loads(r.out)
    assert (r.code, data["kind"], data["verdict"], data["groups"]) == (11, "check", "unsafe", [15])
    roles = {m["address"]: m["role"] for m in data["members"]}
    assert roles["0000:07:00.0"] == "target"
    assert roles["0000:04:00.0"] == "host-critical"
    assert roles["0000:03:00.0"] == "bridge left alone"
    assert roles["0000:06:00.0"] in ("leaves the host", "host-critical")
    gpu = next(m for m in data["members"] if m["address"] == "0000:04:00.0")
    assert {"kind": "console", "critical": True, "loss": "the display",
            "detail": "boot VGA: the firmware started the console on it"} in gpu["needs"]
    assert any(r["device"] == "0000:04:00.0" and r["level"] == "unsafe" for r in data["reasons"])


# -- levels and exit codes --------------------------------------------------------------------

ALONE_NVME = [Spec("00:01.0", 0x1022, 0x1483, 0x060400, pcie_type=PCIE_ROOT_PORT, secondary_bus=1, group=1),
              Spec("01:00.0", 0x15B7, 0x5006, 0x010802, parent="00:01.0", pcie_type=PCIE_ENDPOINT,
                   group=2, driver="nvme", reset_method="flr")]


def test_alone_exits_0(tmp_path):
    r = cli("check", "01:00.0", "--snapshot", snapshot_of(tmp_path, ALONE_NVME, {"version": 1}))
    assert r.code == 0
    assert verdict_line(r).startswith("Verdict: alone - 01:00.0 is alone in IOMMU group 2")


def test_bridge_only_company_is_harmless_and_gpu_audio_must_come_along(tmp_path):
    specs = [Spec("00:01.0", 0x8086, 0x1901, 0x060400, pcie_type=PCIE_ROOT_PORT, secondary_bus=1, group=1),
             Spec("01:00.0", 0x10DE, 0x1B80, 0x030000, parent="00:01.0", pcie_type=PCIE_ENDPOINT,
                  multifunction=True, group=1, driver="vfio-pci", reset_method="bus", boot_vga=False),
             Spec("01:00.1", 0x10DE, 0x10F0, 0x040300, parent="00:01.0", pcie_type=PCIE_ENDPOINT,
                  multifunction=True, group=1, driver="vfio-pci")]
    top = build_topology(capture_of(specs), "t")
    v = judge(top, parse_targets(["01:00.0"], top))
    assert v.level == Level.HARMLESS
    audio = next(m for m in v.members if m.address.short == "01:00.1")
    assert (audio.role, audio.pass_along) == ("same card", True)
    r = cli("check", "01:00", "--snapshot", snapshot_of(tmp_path, specs, {"version": 1}))
    assert r.code == 0
    assert "01:00 (all functions) shares IOMMU group 1 only with bridges" in r.out


def test_own_card_functions_do_not_make_it_costly(tmp_path):
    specs = [Spec("00:01.0", 0x8086, 0x1901, 0x060400, pcie_type=PCIE_ROOT_PORT, secondary_bus=1, group=1),
             Spec("01:00.0", 0x10DE, 0x1B80, 0x030000, parent="00:01.0", pcie_type=PCIE_ENDPOINT,
                  multifunction=True, group=2, driver="nouveau", reset_method="bus"),
             Spec("01:00.1", 0x10DE, 0x10F0, 0x040300, parent="00:01.0", pcie_type=PCIE_ENDPOINT,
                  multifunction=True, group=2, driver="snd_hda_intel")]
    r = cli("check", "01:00.0", "--snapshot", snapshot_of(tmp_path, specs, {"version": 1}))
    assert r.code == 0
    assert verdict_line(r).startswith("Verdict: alone")
    assert "01:00.1 is another function of the same card: pass it along (all functions of 01:00)" in r.out


def test_costly_when_a_device_without_host_use_leaves(tmp_path):
    specs = [*ALONE_NVME,
             Spec("01:01.0", 0x8086, 0x1533, 0x020000, parent="00:01.0", pcie_type=PCIE_ENDPOINT, group=2,
                  driver="igb")]
    r = cli("check", "01:00.0", "--snapshot", snapshot_of(tmp_path, specs, {"version": 1}))
    assert r.code == 10
    assert "Verdict: shares, costly - passing 01:00.0 takes the network (01:01.0, driver igb)" in r.out


def test_target_without_reset_and_already_in_a_vm_is_said(tmp_path):
    specs = [ALONE_NVME[0], Spec("01:00.0", 0x1B4B, 0x9215, 0x010601, parent="00:01.0",
                                 pcie_type=PCIE_ENDPOINT, group=2, driver="ahci")]
    facts = {"version": 1, "proxmox": {"node": "pve", "mappings": [],
                                        "vms": [{"vmid": "101", "key": "hostpci0", "value": "01:00",
                                                 "pending": False}]}}
    r = cli("check", "01:00.0", "--snapshot", snapshot_of(tmp_path, specs, facts))
    assert r.code == 0
    assert "01:00.0 has no reset method" in r.out
    assert "01:00.0 is bound to ahci now: the host uses it until the VM starts" in r.out
    assert "01:00.0 is already given to a VM: VM 101 uses it: hostpci0: 01:00" in r.out


def test_boot_gpu_as_target_is_unsafe(tmp_path):
    specs = [ALONE_NVME[0], Spec("01:00.0", 0x10DE, 0x1B80, 0x030000, parent="00:01.0",
                                 pcie_type=PCIE_ENDPOINT, group=2, driver="nouveau", boot_vga=True,
                                 reset_method="bus")]
    r = cli("check", "01:00.0", "--snapshot", snapshot_of(tmp_path, specs, {"version": 1}))
    assert r.code == 11
    assert "01:00.0 is the boot GPU" in r.out


def test_platform_device_in_the_group_is_unsafe(tmp_path):
    specs = [Spec("00:1f.0", 0x8086, 0x2918, 0x060100, multifunction=True, group=5),
             Spec("00:1f.2", 0x8086, 0x2922, 0x010601, multifunction=True, group=5, driver="ahci",
                  reset_method="flr"),
             Spec("00:1f.3", 0x8086, 0x2930, 0x0C0500, multifunction=True, group=5, driver="i801_smbus")]
    r = cli("check", "00:1f.2", "--snapshot", snapshot_of(tmp_path, specs, {"version": 1}))
    assert r.code == 11
    assert "the ISA bridge" in verdict_line(r) and "the SMBus controller" in verdict_line(r)


def test_without_host_facts_a_note_says_what_was_not_judged(tmp_path):
    r = cli("check", "01:00.0", "--snapshot", snapshot_of(tmp_path, ALONE_NVME))
    assert r.code == 0
    assert "no host-usage facts" in r.err
    assert "only group membership, device classes, drivers and boot_vga were judged" in r.err


# -- the device argument and bad input --------------------------------------------------------

@pytest.mark.parametrize("arg, want", [
    ("07:00.0", ["0000:07:00.0"]),
    ("0000:07:00.0", ["0000:07:00.0"]),
    ("04:00", ["0000:04:00.0", "0000:04:00.1"]),
    ("04:00.1;07:00.0", ["0000:04:00.1", "0000:07:00.0"]),
])
def test_device_argument_forms(arg, want):
    top = build_topology(capture_of(B550_LIKE), "t")
    assert [str(a) for a in parse_targets([arg], top)] == want


@pytest.mark.parametrize("arg", ["07:00.8", "7:0.0", "07-00.0", "0000:07:00.0.1", "gpu", "07:20.0"])
def test_malformed_address_is_bad_input(arg):
    top = build_topology(capture_of(B550_LIKE), "t")
    with pytest.raises(BadInput, match="is not a PCI address"):
        parse_targets([arg], top)
    r = cli("check", arg, "--sample", "asus-tuf-b550-plus")
    assert r.code == 3 and r.err.startswith(f"vfiokit: error: '{arg}' is not a PCI address") and not r.out


def test_unknown_address_and_empty_slot_are_not_found():
    top = build_topology(capture_of(B550_LIKE), "t")
    with pytest.raises(DeviceNotFound):
        parse_targets(["05:00"], top)
    r = cli("check", "09:00.0", "--sample", "asus-tuf-b550-plus")
    assert (r.code, r.out) == (4, "")
    assert r.err.startswith("vfiokit: error: no PCI device at 0000:09:00.0 in sample asus-tuf-b550-plus")
    r = cli("check", "05:00", "--sample", "asus-tuf-b550-plus")
    assert r.code == 4 and "no PCI device in slot 05:00" in r.err


def test_bridge_as_target_is_refused_with_what_is_behind_it():
    from vfiokit.model import PciAddress
    from vfiokit.sources import samples

    port = samples.load("asus-tuf-b550-plus").device(PciAddress.parse("07:00.0")).parent
    r = cli("check", port.short, "--sample", "asus-tuf-b550-plus")
    assert r.code == 3 and not r.out
    assert r.err.startswith(f"vfiokit: error: {port} is a PCI bridge: Proxmox never passes bridges")
    assert "behind it: 07:00.0" in r.err


def test_device_in_no_group_is_refused():
    r = cli("check", "00:00.2", "--sample", "asus-tuf-b550-plus")
    assert r.code == 3 and not r.out
    assert r.err.startswith("vfiokit: error: 0000:00:00.2 is in no IOMMU group")


def test_host_without_iommu_says_so(tmp_path):
    r = cli("check", "01:00.0", "--snapshot", snapshot_of(tmp_path, ALONE_NVME, groups=False))
    assert r.code == 5 and not r.out
    assert "has no IOMMU groups, so 0000:01:00.0 cannot be passed through: " in r.err


def test_no_traceback_for_a_tree_without_host_facts(tmp_path):
    HostTree(tmp_path)  # a PCI tree and nothing else: no /proc at all
    r = cli("check", "07:00.0", "--root", str(tmp_path))
    assert r.code == 11 and "Traceback" not in r.err


# -- the lab's real capture -------------------------------------------------------------------

def test_lab_hostuse_the_ahci_takes_disk_network_and_display():
    """A real kernel's tree (QEMU lab, topology `hostuse`): an NVMe mounted on /mnt/data, an e1000e
    in vmbr0 carrying the default route, a boot VGA and an AHCI controller, one group."""
    raw = json.loads(LAB.read_text())
    assert raw["host_usage"]  # captured by the guest's own `vfiokit snapshot` (python -m lab regen)
    top = build_topology(raw, "lab")
    ahci = next(d for d in top.devices if d.class_code == 0x010601 and d.address.bus != 0)
    nvme = next(d for d in top.devices if d.class_id == 0x0108)
    nic = next(d for d in top.devices if d.class_id == 0x0200 and d.iommu_group == ahci.iommu_group)
    vga = next(d for d in top.devices if d.boot_vga)
    r = cli("check", ahci.address.short, "--snapshot", str(LAB))
    assert r.code == 11, r.out + r.err
    verdict = verdict_line(r)
    assert f"the display ({vga.address.short}, boot VGA)" in verdict
    assert f"the network ({nic.address.short}, default route (ipv4) via vmbr0 -> " in verdict
    assert f"the disks ({nvme.address.short}, /mnt/data is on nvme0n1 -> nvme0)" in verdict
    assert f"/mnt/data is on nvme0n1 -> nvme0 -> {nvme.address}" in r.out


def test_two_functions_of_a_slot_are_not_called_the_whole_slot():
    # 0d:00 also holds .0 and .1 on this board: naming .3 and .4 is not "all functions"
    r = cli("check", "0d:00.3", "0d:00.4", "--sample", "asus-tuf-b550-plus")
    assert verdict_line(r).startswith("Verdict: costly - passing 0d:00.3, 0d:00.4 takes the USB keyboard")
    r = cli("check", "04:00.0", "04:00.1", "--sample", "asus-tuf-b550-plus")
    assert verdict_line(r).startswith("Verdict: unsafe - passing 04:00 (all functions) takes the display")


def test_costly_target_alone_in_its_group_is_not_said_to_share():
    # The asus sample's 0d:00.3 is alone in group 20; the cost is the USB keyboard on the target itself.
    r = cli("check", "0d:00.3", "--sample", "asus-tuf-b550-plus")
    assert r.code == 10
    first = verdict_line(r)
    assert first.startswith("Verdict: costly - ") and "shares" not in first
    assert "IOMMU group 20 (1 device)" in r.out


def test_device_a_listing_shows_outside_any_group_has_an_unknown_group_not_none(tmp_path):
    # The paste shows 01:00.0 without a group header: its group is unknown, not "none".
    f = tmp_path / "paste.txt"
    f.write_text("01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [10de:1b80]\n"
                 "IOMMU Group 2 02:00.0 Ethernet controller [0200]: Intel Corporation I211 [8086:1539]\n")
    r = cli("check", "01:00.0", "--listing", str(f))
    assert r.code == 3 and r.err.count("\n") == 1
    assert "in no IOMMU group" not in r.err and "group is unknown" in r.err and str(f) in r.err
    r = cli("groups", "--listing", str(f))
    assert "Not in any IOMMU group" not in r.out and "cannot be passed through" not in r.out
    assert "IOMMU group unknown" in r.out and "01:00.0 VGA" in r.out
    body = json.loads(cli("groups", "--listing", str(f), "--json").out)
    assert body["ungrouped"] == [] and [d["address"] for d in body["group_unknown"]] == ["0000:01:00.0"]


def test_json_error_is_an_envelope_naming_the_device():
    # A script reading --json gets the failure as JSON too, with the device it failed on.
    r = cli("check", "--sample", "asus-tuf-b550-plus", "0e:00.0", "--json")
    assert r.code == ExitCode.NOT_FOUND
    doc = json.loads(r.out)
    assert (doc["kind"], doc["code"], doc["device"]) == ("error", 4, "0e:00.0")
    assert doc["message"] in r.err


def test_json_reasons_carry_code_and_facts_beside_the_text():
    doc = json.loads(cli("check", "--sample", "asus-tuf-b550-plus", "0b:00.0", "--json").out)
    bound = next(r for r in doc["reasons"] if r["code"] == "target-bound")
    assert bound["facts"]["driver"] == "nvme" and "bound to nvme" in bound["text"]


def test_json_error_of_a_truncated_snapshot_names_file_and_line(tmp_path):
    bad = tmp_path / "snap.json"
    bad.write_text('{"a":\n')
    r = cli("groups", "--snapshot", str(bad), "--json")
    doc = json.loads(r.out)
    assert (r.code, doc["file"], doc["line"]) == (ExitCode.BAD_INPUT, str(bad), 2)
