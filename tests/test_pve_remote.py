"""The API flows against a fake Proxmox VE API (tests/fake_pve.py, built from the published schema).

Hardware answers are shaped like PVE::SysFSTools::lspci's: a two-node cluster with the same GTX 1050 Ti
on both (different addresses), a GTX 1080 on the second, and a third node that never answers in time.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import cli
from tests.fake_pve import ALL_PRIVS, FakeCluster, FakePve, Token, Vm
from vfiokit.errors import ExitCode

AMD, NV = "Advanced Micro Devices, Inc. [AMD]", "NVIDIA Corporation"


def pci(id_, cls, vendor, device, group, vname=None, dname=None, sub=None):
    item = {"id": id_, "class": cls, "vendor": vendor, "device": device, "iommugroup": group}
    if vname:
        item["vendor_name"] = vname
    if dname:
        item["device_name"] = dname
    if sub:
        item["subsystem_vendor"], item["subsystem_device"] = sub
    return item


PVE1 = [
    pci("0000:00:00.0", "0x060000", "0x1022", "0x1480", 0, AMD, "Starship/Matisse Root Complex"),
    pci("0000:00:01.1", "0x060400", "0x1022", "0x1483", 2, AMD, "Starship/Matisse GPP Bridge"),
    pci("0000:01:00.0", "0x030000", "0x10de", "0x1c82", 14, NV, "GP107 [GeForce GTX 1050 Ti]",
        ("0x1458", "0x3fbb")),
    pci("0000:01:00.1", "0x040300", "0x10de", "0x0fb9", 14, NV, "GP107GL High Definition Audio Controller",
        ("0x1458", "0x3fbb")),
    pci("0000:05:00.0", "0x010601", "0x1b4b", "0x9230", 15, "Marvell Technology Group Ltd.",
        "88SE9230 PCIe 2.0 x2 4-port SATA 6 Gb/s RAID Controller", ("0x1b4b", "0x9230")),
    pci("0000:06:00.0", "0x020000", "0x8086", "0x1539", 15, "Intel Corporation", "I211 Gigabit Network Connection",
        ("0x1043", "0x85f0")),
]
PVE2 = [
    pci("0000:00:00.0", "0x060000", "0x8086", "0x3e30", 0, "Intel Corporation", "8th Gen Core 8-core Host Bridge"),
    pci("0000:02:00.0", "0x030000", "0x10de", "0x1c82", 20, NV, "GP107 [GeForce GTX 1050 Ti]", ("0x1458", "0x3fbb")),
    pci("0000:02:00.1", "0x040300", "0x10de", "0x0fb9", 20, NV, "GP107GL High Definition Audio Controller",
        ("0x1458", "0x3fbb")),
    pci("0000:03:00.0", "0x030000", "0x10de", "0x1b80", 21, NV, "GP104 [GeForce GTX 1080]", ("0x3842", "0x6183")),
]

SECRET = "5c2f0d6a-0b3e-4c37-9a61-8f4d2b1e7c90"


def make_cluster():
    """The cluster every test here starts from."""
    return FakeCluster(
        pci={"pve1": PVE1, "pve2": PVE2, "pve3": []},
        vms={"pve1": {"100": Vm({"machine": "q35", "bios": "ovmf", "name": "media", "cores": "4"})},
             "pve2": {"200": Vm({"machine": "q35", "name": "gaming", "memory": "16384"}, running=True),
                      "201": Vm({"name": "nas", "hostpci0": "0000:03:00.0"})}},
        tokens={"root@pam!vfiokit": Token(SECRET, set(ALL_PRIVS)),
            "audit@pve!ro": Token(SECRET, {"VM.Audit", "Mapping.Audit"})},
        slow_nodes={"pve3": 5.0},
    )


@pytest.fixture
def fake(tmp_path, monkeypatch):
    c = make_cluster()
    monkeypatch.setenv("VFIOKIT_PVE_TOKEN", SECRET)
    with FakePve(c, tmp_path) as server:
        yield server


def remote(fake, *args, token="root@pam!vfiokit", timeout="2"):
    return cli(*args, "--host", fake.host, "--token-id", token, "--ca-file", str(fake.cafile),
               "--timeout", timeout)


def test_inventory_every_node_and_a_node_that_times_out(fake):
    r = remote(fake, "cluster", "inventory", timeout="1")
    assert r.code == 0, r.err
    assert "Node pve1" in r.out and "Node pve2" in r.out
    assert "IOMMU group 14 (2 devices)" in r.out
    assert "01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP107 [GeForce GTX 1050 Ti] [10de:1c82]" \
        in r.out
    assert "00:01.1" in r.out  # bridges too: the class blacklist was emptied
    assert "node pve3" in r.err and "timed out" in r.err
    asked = [p for m, path, p in fake.cluster.requests if path.endswith("/hardware/pci")]
    assert all(p == {"pci-class-blacklist": ""} for p in asked)


def test_inventory_json(fake):
    r = remote(fake, "cluster", "inventory", "--json", "--node", "pve1", "--node", "pve2")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["kind"] == "cluster-inventory" and data["failed"] == []
    pve1 = next(n for n in data["nodes"] if n["node"] == "pve1")
    g15 = next(g for g in pve1["groups"] if g["number"] == 15)
    assert [d["address"] for d in g15["devices"]] == ["0000:05:00.0", "0000:06:00.0"]
    assert g15["devices"][0]["subsystem"] == "1b4b:9230"


def test_inventory_token_without_rights(fake):
    r = remote(fake, "cluster", "inventory", "--node", "pve1", token="audit@pve!ro")
    assert r.code == ExitCode.REMOTE
    assert "no rights (403 Permission check failed (/, Sys.Audit))" in r.err


def test_bad_secret_unreachable_untrusted(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("VFIOKIT_PVE_TOKEN", "wrong")
    r = remote(fake, "cluster", "inventory")
    assert r.code == ExitCode.REMOTE and "authentication failed (401" in r.err
    monkeypatch.delenv("VFIOKIT_PVE_TOKEN")
    r = remote(fake, "cluster", "inventory")
    assert r.code == ExitCode.BAD_INPUT and "VFIOKIT_PVE_TOKEN" in r.err and "never on the command line" in r.err
    secret = tmp_path / "token"
    secret.write_text(SECRET + "\n")
    r = cli("cluster", "inventory", "--host", fake.host, "--token-id", "root@pam!vfiokit", "--token-file",
            str(secret))  # no --ca-file: the self-signed certificate is not trusted
    assert r.code == ExitCode.REMOTE and "TLS certificate not trusted" in r.err and "--ca-file" in r.err
    r = cli("cluster", "inventory", "--host", "127.0.0.1:9", "--token-id", "root@pam!vfiokit",
            "--token-file", str(secret), "--timeout", "2")
    assert r.code == ExitCode.REMOTE and "unreachable" in r.err


def test_map_then_attach_by_mapping_on_a_running_vm(fake):
    r = remote(fake, "cluster", "map", "gtx1050", "01:00@pve1", "02:00@pve2", "--yes")
    assert r.code == 0, r.err
    assert fake.cluster.mappings["gtx1050"]["map"] == [
        "node=pve1,path=0000:01:00,id=10de:1c82,subsystem-id=1458:3fbb,iommugroup=14",
        "node=pve2,path=0000:02:00,id=10de:1c82,subsystem-id=1458:3fbb,iommugroup=20"]
    before = fake.cluster.vms["pve2"]["200"].digest
    r = remote(fake, "attach", "200", "--mapping", "gtx1050", "--pcie", "--yes")
    assert r.code == 0, r.err
    assert "+hostpci0: mapping=gtx1050,pcie=1" in r.out
    assert "next start" in r.err
    # the API knows no drivers and no boot_vga: the note does not claim they were judged
    assert "only group membership and device classes were judged" in r.err
    assert "run `vfiokit check` on the host itself" in r.err
    put = [p for m, path, p in fake.cluster.requests if m == "PUT"][-1]
    assert put == {"hostpci0": "mapping=gtx1050,pcie=1", "digest": before}
    vm = fake.cluster.vms["pve2"]["200"]
    assert vm.pending == {"hostpci0": "mapping=gtx1050,pcie=1"} and "hostpci0" not in vm.config
    # and back
    r = remote(fake, "detach", "200", "gtx1050", "--yes")
    assert r.code == 0, r.err
    assert vm.pending == {}


def test_map_refuses_different_devices_and_updates_one_node(fake):
    r = remote(fake, "cluster", "map", "gpu", "01:00.0@pve1", "03:00.0@pve2", "--yes")
    assert r.code == ExitCode.REFUSED
    assert "the devices differ" in r.err and "10de:1c82" in r.err and "10de:1b80" in r.err
    assert "gpu" not in fake.cluster.mappings
    assert remote(fake, "cluster", "map", "gpu", "01:00.0@pve1", "--yes").code == 0
    r = remote(fake, "cluster", "map", "gpu", "02:00.0@pve2", "--dry-run")
    assert r.code == 0 and "+ map node=pve2,path=0000:02:00.0" in r.out
    assert len(fake.cluster.mappings["gpu"]["map"]) == 1
    assert remote(fake, "cluster", "map", "gpu", "02:00.0@pve2", "--yes").code == 0
    assert [e.split(",")[0] for e in fake.cluster.mappings["gpu"]["map"]] == ["node=pve1", "node=pve2"]


def test_map_conflict(fake):
    assert remote(fake, "cluster", "map", "gpu", "01:00.0@pve1", "--yes").code == 0

    def meanwhile(c, path):
        c.mappings["other"] = {"map": ["node=pve2,path=0000:03:00.0,id=10de:1b80"]}

    fake.cluster.before_put = meanwhile
    r = remote(fake, "cluster", "map", "gpu", "02:00.0@pve2", "--yes")
    assert r.code == ExitCode.CONFLICT
    assert "detected modified configuration" in r.err
    assert len(fake.cluster.mappings["gpu"]["map"]) == 1


def test_attach_digest_conflict_is_not_overwritten(fake):
    assert remote(fake, "cluster", "map", "gtx1050", "01:00@pve1", "--yes").code == 0

    def meanwhile(c, path):
        c.vms["pve1"]["100"].config["memory"] = "4096"  # someone edits the VM in the GUI

    fake.cluster.before_put = meanwhile
    r = remote(fake, "attach", "100", "--mapping", "gtx1050", "--yes")
    assert r.code == ExitCode.CONFLICT
    assert "checksum mismatch (file change by other user?)" in r.err
    assert "hostpci0" not in fake.cluster.vms["pve1"]["100"].config


def test_attach_raw_device_over_api_is_refused_with_the_way_out(fake):
    r = remote(fake, "attach", "100", "01:00", "--dry-run")
    assert r.code == 0, r.err
    assert "+hostpci0: 0000:01:00" in r.out and "would be refused" in r.err
    r = remote(fake, "attach", "100", "01:00", "--yes")
    assert r.code == ExitCode.REFUSED
    assert "only root can set 'hostpci0' config for non-mapped devices" in r.err
    assert "vfiokit cluster map NAME 01:00@NODE" in r.err
    assert not [m for m, _, _ in fake.cluster.requests if m == "PUT"]


def test_attach_other_vm_has_the_card_remote(fake):
    assert remote(fake, "cluster", "map", "gtx1080", "03:00.0@pve2", "--yes").code == 0
    r = remote(fake, "attach", "200", "--mapping", "gtx1080", "--yes")
    assert r.code == ExitCode.REFUSED
    assert "0000:03:00.0 is already given to VM 201 (hostpci0: 0000:03:00.0)" in r.err


def test_attach_token_without_hwtype(fake):
    fake.cluster.mappings["gtx1050"] = {"map": ["node=pve1,path=0000:01:00,id=10de:1c82"]}
    fake.cluster.tokens["audit@pve!ro"].privs |= {"Sys.Audit"}
    r = remote(fake, "attach", "100", "--mapping", "gtx1050", "--yes", token="audit@pve!ro")
    assert r.code == ExitCode.REMOTE
    assert "no rights (403 Permission check failed (/vms/100, VM.Config.HWType))" in r.err


def test_secret_is_never_an_option(fake):
    r = cli("attach", "100", "--mapping", "x", "--host", fake.host, "--token", SECRET)
    assert r.code == ExitCode.USAGE


def test_detach_raw_device_with_a_token_says_what_proxmox_said(fake):
    r = remote(fake, "detach", "201", "03:00.0", "--yes")
    assert r.code == ExitCode.REMOTE
    assert "only root can set 'hostpci0' config for non-mapped devices" in r.err
    assert fake.cluster.vms["pve2"]["201"].config["hostpci0"] == "0000:03:00.0"


def test_a_node_with_malformed_hardware_data_is_reported(fake):
    fake.cluster.pci["pve2"] = [{"id": "zz:00.0", "class": "0x030000", "vendor": "0x10de", "device": "0x1c82",
                                 "iommugroup": 3}]
    r = remote(fake, "cluster", "inventory", "--node", "pve1", "--node", "pve2")
    assert r.code == 0, r.err
    assert "Node pve1" in r.out and "Node pve2" not in r.out
    assert "node pve2: pve2: /hardware/pci item 0: unreadable id or iommugroup ('zz:00.0', 3)" in r.err


def test_no_iommu_node(fake):
    fake.cluster.pci["pve1"] = [{**d, "iommugroup": -1} for d in PVE1]
    r = remote(fake, "cluster", "inventory", "--node", "pve1", "--json")
    data = json.loads(r.out)
    assert data["nodes"][0]["iommu"] is False and data["nodes"][0]["groups"] == []
    assert len(data["nodes"][0]["ungrouped"]) == len(PVE1)


@pytest.mark.parametrize("specs", [("01:00@pve1", "01:00.0@pve1"), ("01:00.0@pve1", "01:00.0@pve1"),
                                   ("01:00.1@pve1", "01:00@pve1")])
def test_map_refuses_one_device_named_twice_on_a_node(fake, specs):
    # Entries of one node are alternatives (the first free one is used): the same function twice
    # is no alternative, only a confusing mapping.
    r = remote(fake, "cluster", "map", "gtx1050", *specs, "--yes")
    assert r.code == ExitCode.BAD_INPUT
    assert r.err.count("\n") == 1 and "pve1" in r.err and "twice" in r.err
    assert "gtx1050" not in fake.cluster.mappings


def test_attach_to_a_stopped_vm_with_pending_changes_shows_what_the_api_writes(fake):
    # PUT on a stopped VM: update_vm_api applies every pending change, the diff shows all of it.
    from vfiokit.formats import pve_config as pc

    vm = fake.cluster.vms["pve1"]["100"]
    vm.pending = {"memory": "4096"}
    before = vm.text()
    assert remote(fake, "cluster", "map", "gtx1050", "01:00@pve1", "--yes").code == 0
    r = remote(fake, "attach", "100", "--mapping", "gtx1050", "--yes")
    assert r.code == 0, r.err
    assert vm.config["memory"] == "4096" and vm.pending == {}
    assert pc.unified_diff(before, vm.text(), "qemu-server/100.conf") in r.out
    assert "pending changes (memory: 4096)" in r.err
