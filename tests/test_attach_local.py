"""`vfiokit attach/detach` on a Proxmox node: the real CLI, a real sysfs tree, and a `qm` stand-in.

Proxmox itself cannot run here, so `qm` is a stand-in (tests/standins/qm) that records its
arguments and edits the config in a temp /etc/pve as qemu-server would. The machine is hand-made
(one rule at a time): a GPU with its audio function alone in group 2, a SATA controller sharing
group 4 with a NIC, a host bridge.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.conftest import cli
from vfiokit.errors import ExitCode
from vfiokit.formats import pve_config as pc
from vfiokit.model import PCIE_ENDPOINT, PCIE_ROOT_PORT
from vfiokit.sources import synthetic, tree
from vfiokit.sources.synthetic import Spec

STANDINS = Path(__file__).parent / "standins"

MACHINE = [
    Spec("00:00.0", 0x1022, 0x1480, 0x060000, group=0),
    Spec("00:01.1", 0x1022, 0x1483, 0x060400, pcie_type=PCIE_ROOT_PORT, acs=(0x5F, 0x5D), secondary_bus=1,
         subordinate_bus=1, group=1, driver="pcieport"),
    Spec("01:00.0", 0x10DE, 0x1C82, 0x030000, revision=0xA1, parent="00:01.1", pcie_type=PCIE_ENDPOINT,
         multifunction=True, group=2, driver="vfio-pci", reset_method="flr bus"),
    Spec("01:00.1", 0x10DE, 0x0FB9, 0x040300, revision=0xA1, parent="00:01.1", pcie_type=PCIE_ENDPOINT,
         multifunction=True, group=2, driver="vfio-pci", reset_method="flr bus"),
    Spec("00:02.1", 0x1022, 0x1483, 0x060400, pcie_type=PCIE_ROOT_PORT, acs=(0x5F, 0x5D), secondary_bus=4,
         subordinate_bus=5, group=3, driver="pcieport"),
    Spec("04:00.0", 0x1B4B, 0x9230, 0x010601, revision=0x11, parent="00:02.1", pcie_type=PCIE_ENDPOINT,
         group=4, driver="ahci", reset_method="bus"),
    Spec("05:00.0", 0x8086, 0x1539, 0x020000, revision=0x03, parent="00:02.1", pcie_type=PCIE_ENDPOINT,
         group=4, driver="igb", reset_method="flr"),
]

VM101 = """\
#Jellyfin
boot: order=scsi0
bios: ovmf
cores: 4
machine: q35
memory: 8192
name: media
scsi0: local-lvm:vm-101-disk-0,size=32G

[snap1]
cores: 2
machine: q35
snaptime: 1732700000
"""
VM102 = "cores: 2\nhostpci0: 0000:04:00.0\nmemory: 2048\nname: nas\n"
VM103 = "cores: 2\nmemory: 2048\nname: old-pc\nostype: l26\n"  # i440fx, SeaBIOS


@pytest.fixture
def node(tmp_path, monkeypatch):
    root = tmp_path / "root"
    tree.materialize(synthetic.capture_of(MACHINE), root)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/hostname").write_text("pve1\n")
    qs = root / "etc/pve/qemu-server"
    qs.mkdir(parents=True)
    for vmid, text in (("101", VM101), ("102", VM102), ("103", VM103)):
        (qs / f"{vmid}.conf").write_text(text)
    (root / "run/qemu-server").mkdir(parents=True)
    log = tmp_path / "qm.log"
    monkeypatch.setenv("PATH", f"{STANDINS}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("QM_ROOT", str(root))
    monkeypatch.setenv("QM_LOG", str(log))
    return root


def qm_calls(root: Path) -> list[list[str]]:
    log = Path(os.environ["QM_LOG"])
    return [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []


def conf(root: Path, vmid: str) -> str:
    return (root / f"etc/pve/qemu-server/{vmid}.conf").read_text()


def test_attach_gpu_with_all_functions_pcie_primary(node):
    before = conf(node, "101")
    r = cli("attach", "101", "01:00", "--pcie", "--primary-gpu", "--root", str(node), "--yes")
    assert r.code == 0, r.err
    value = "0000:01:00,pcie=1,x-vga=1"
    assert "+hostpci0: " + value in r.out
    assert "UEFI-capable ROM" in r.err  # OVMF VM: the card needs a GOP ROM
    digest = hashlib.sha1(before.encode()).hexdigest()
    assert qm_calls(node) == [["status", "101"], ["set", "101", "--hostpci0", value, "--digest", digest]]
    assert f"hostpci0: {value}\n" in conf(node, "101")
    assert conf(node, "101").endswith("[snap1]\ncores: 2\nmachine: q35\nsnaptime: 1732700000\n")


def test_dry_run_shows_the_diff_and_writes_nothing(node):
    r = cli("attach", "101", "01:00.0", "--root", str(node), "--dry-run")
    assert r.code == 0, r.err
    assert "+hostpci0: 0000:01:00.0" in r.out
    assert "01:00.1 share the slot and the IOMMU group" in r.err or "0000:01:00.1" in r.err
    assert "dry run" in r.err
    assert [c[0] for c in qm_calls(node)] == ["status"]
    assert conf(node, "101") == VM101


def test_running_vm_gets_it_pending(node):
    (node / "run/qemu-server/101.pid").write_text("4242\n")
    r = cli("attach", "101", "01:00", "--root", str(node), "--yes")
    assert r.code == 0, r.err
    assert "next start" in r.err
    text = conf(node, "101")
    assert "[PENDING]\nhostpci0: 0000:01:00\n" in text
    assert "hostpci0" not in text.split("[PENDING]")[0]


def test_pcie_needs_q35(node):
    r = cli("attach", "103", "01:00", "--pcie", "--root", str(node), "--yes")
    assert r.code == ExitCode.REFUSED
    assert "q35 machine model is not enabled" in r.err
    assert [c[0] for c in qm_calls(node)] == ["status"]


def test_device_of_another_vm_is_refused(node):
    r = cli("attach", "101", "04:00.0", "--root", str(node), "--yes", "--accept-siblings")
    assert r.code == ExitCode.REFUSED
    assert "0000:04:00.0 is already given to VM 102 (hostpci0: 0000:04:00.0)" in r.err
    assert conf(node, "101") == VM101


def test_primary_gpu_must_be_a_display(node):
    r = cli("attach", "101", "05:00.0", "--primary-gpu", "--root", str(node), "--yes")
    assert r.code == ExitCode.BAD_INPUT
    assert "05:00.0 is not a display controller (class 0200)" in r.err


def test_romfile_outside_usr_share_kvm(node):
    r = cli("attach", "101", "01:00", "--romfile", "/root/vbios.rom", "--root", str(node), "--yes")
    assert r.code == ExitCode.BAD_INPUT
    assert "under /usr/share/kvm/" in r.err


def test_costly_group_needs_accept_siblings(node):
    (node / "etc/pve/qemu-server/102.conf").write_text("cores: 2\n")
    r = cli("attach", "101", "05:00.0", "--root", str(node), "--yes")
    assert r.code == ExitCode.REFUSED
    assert "costly" in r.err and "04:00.0" in r.err
    assert "--accept-siblings" in r.err
    r = cli("attach", "101", "05:00.0", "--root", str(node), "--yes", "--accept-siblings")
    assert r.code == 0, r.err
    assert "hostpci0: 0000:05:00.0\n" in conf(node, "101")


def test_unsafe_needs_force_and_says_what_breaks(node):
    r = cli("attach", "101", "00:00.0", "--root", str(node), "--yes")
    assert r.code == ExitCode.REFUSED
    assert "unsafe" in r.err and "--force" in r.err
    assert conf(node, "101") == VM101
    r = cli("attach", "101", "00:00.0", "--root", str(node), "--yes", "--force")
    assert r.code == 0, r.err
    assert "breaks:" in r.err


@pytest.mark.parametrize("message", ["checksum mismatch (file change by other user?)",
                                     "detected modified configuration - file changed by other user? Try again."])
def test_concurrent_edit_is_a_conflict(node, monkeypatch, message):
    # someone edits the config between vfiokit's read and its qm set: qm refuses the stale digest
    real = STANDINS / "qm"
    wrapper = node.parent / "bin"
    wrapper.mkdir()
    edit = f"echo 'cores: 8' >> {node}/etc/pve/qemu-server/101.conf"
    (wrapper / "qm").write_text(f"#!/bin/sh\n[ \"$1\" = set ] && {edit}\nexec {real} \"$@\"\n")
    (wrapper / "qm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("QM_DIGEST_MESSAGE", message)
    r = cli("attach", "101", "01:00", "--root", str(node), "--yes")
    assert r.code == ExitCode.CONFLICT
    assert message in r.err
    assert "hostpci" not in conf(node, "101")


def test_detach_removes_the_entry(node):
    r = cli("detach", "102", "04:00.0", "--root", str(node), "--yes")
    assert r.code == 0, r.err
    assert "-hostpci0: 0000:04:00.0" in r.out
    assert qm_calls(node)[-1][:4] == ["set", "102", "--delete", "hostpci0"]
    assert conf(node, "102") == "cores: 2\nmemory: 2048\nname: nas\n"


def test_detach_on_running_vm_is_pending(node):
    (node / "run/qemu-server/102.pid").write_text("4243\n")
    r = cli("detach", "102", "hostpci0", "--root", str(node), "--yes")
    assert r.code == 0, r.err
    assert "stays until the next start" in r.err
    assert "[PENDING]\ndelete: hostpci0\n" in conf(node, "102")


def test_detach_unknown_device(node):
    r = cli("detach", "101", "01:00.0", "--root", str(node), "--yes")
    assert r.code == ExitCode.NOT_FOUND
    assert "VM 101 has no hostpci entry for 0000:01:00.0" in r.err


def test_not_a_proxmox_node(tmp_path):
    r = cli("attach", "101", "01:00", "--root", str(tmp_path), "--yes")
    assert r.code == ExitCode.NOT_FOUND
    assert "not a Proxmox VE node" in r.err


def test_unknown_vm_and_bad_vmid(node):
    r = cli("attach", "999", "01:00", "--root", str(node), "--yes")
    assert r.code == ExitCode.NOT_FOUND and "VM 999" in r.err
    r = cli("attach", "abc", "01:00", "--root", str(node), "--yes")
    assert r.code == ExitCode.BAD_INPUT and "'abc' is not a VM id" in r.err


def test_answering_no_writes_nothing(node):
    r = cli("detach", "102", "04:00.0", "--root", str(node), stdin="n\n")
    assert r.code == ExitCode.ABORTED
    assert "-hostpci0: 0000:04:00.0" in r.out  # the plan was shown before the question
    assert conf(node, "102") == VM102
    assert [c[0] for c in qm_calls(node)] == ["status"]


PCI_CFG = """\
gpu
\tmap id=10de:1c82,iommugroup=2,node=pve1,path=0000:01:00,subsystem-id=0000:0000
\tmap id=10de:1c82,iommugroup=20,node=pve2,path=0000:02:00,subsystem-id=0000:0000
\tdescription GTX 1050 Ti on both nodes

nic
\tmap id=8086:1539,node=pve2,path=0000:05:00.0
"""


def test_attach_by_mapping_locally(node):
    (node / "etc/pve/mapping").mkdir()
    (node / "etc/pve/mapping/pci.cfg").write_text(PCI_CFG)
    r = cli("attach", "101", "--mapping", "gpu", "--pcie", "--root", str(node), "--yes")
    assert r.code == 0, r.err
    assert qm_calls(node)[-1][:4] == ["set", "101", "--hostpci0", "mapping=gpu,pcie=1"]
    # the mapping's device on this node (pve1) is now VM 101's: a raw attach elsewhere is refused
    r = cli("attach", "103", "01:00.1", "--root", str(node), "--yes")
    assert r.code == ExitCode.REFUSED
    assert "0000:01:00.1 is already given to VM 101 (hostpci0: mapping=gpu,pcie=1)" in r.err
    # a mapping with nothing on this node
    r = cli("attach", "103", "--mapping", "nic", "--root", str(node), "--yes")
    assert r.code == ExitCode.NOT_FOUND and "no device on this node" in r.err


def test_unknown_device_and_rom_options(node):
    r = cli("attach", "101", "09:00.0", "--root", str(node), "--yes")
    assert r.code == ExitCode.NOT_FOUND and "no PCI device at 0000:09:00.0" in r.err
    r = cli("attach", "101", "01:00", "--rombar", "0", "--romfile", "/usr/share/kvm/gp107.rom", "--root", str(node),
            "--dry-run")
    assert "+hostpci0: 0000:01:00,rombar=0,romfile=gp107.rom" in r.out


def test_stopped_vm_with_pending_changes_shows_what_qm_set_really_writes(node):
    # On a stopped VM `qm set` applies every pending change, not only the new hostpci
    # (qemu-server update_vm_api -> vmconfig_apply_pending): the diff must show all of it.
    path = node / "etc/pve/qemu-server/103.conf"
    path.write_text(VM103 + "\n[PENDING]\ncores: 4\n\n[snap1]\ncores: 2\nsnaptime: 1732700000\n")
    before = path.read_text()
    shown = cli("attach", "103", "01:00", "--root", str(node), "--dry-run")
    assert shown.code == 0, shown.err
    assert "pending" in shown.err and "cores: 4" in shown.err
    r = cli("attach", "103", "01:00", "--root", str(node), "--yes")
    assert r.code == 0, r.err
    after = path.read_text()
    assert "[PENDING]" not in after and "cores: 4\n" in after
    assert pc.unified_diff(before, after, "qemu-server/103.conf") in shown.out


FULL = "machine: q35\n" + "".join(f"hostpci{i}: 0000:{0x10 + i:02x}:00.0\n" for i in range(16))


def test_sixteen_hostpci_used_is_refused_naming_the_vm(node):
    (node / "etc/pve/qemu-server/200.conf").write_text(FULL)
    r = cli("attach", "200", "01:00", "--root", str(node), "--yes")
    assert r.code == ExitCode.REFUSED
    assert r.err.splitlines()[0] == ("vfiokit: error: VM 200: all 16 hostpci slots (hostpci0..hostpci15) "
                                     "are used")
    assert [c[0] for c in qm_calls(node)] == ["status"]


def test_a_pending_delete_frees_its_index_on_a_stopped_vm(node):
    # qm set on a stopped VM applies `delete: hostpci3` first: hostpci3 is free for the new device.
    path = node / "etc/pve/qemu-server/200.conf"
    path.write_text(FULL + "\n[PENDING]\ndelete: hostpci3\n")
    r = cli("attach", "200", "01:00", "--root", str(node), "--yes")
    assert r.code == 0, r.err
    assert "+hostpci3: 0000:01:00" in r.out and "-hostpci3: 0000:13:00.0" in r.out
    assert "hostpci3: 0000:01:00\n" in path.read_text() and "[PENDING]" not in path.read_text()


def test_detaching_twice_from_a_running_vm_changes_nothing_the_second_time(node):
    (node / "run/qemu-server/102.pid").write_text("4243\n")
    assert cli("detach", "102", "04:00.0", "--root", str(node), "--yes").code == 0
    before = conf(node, "102")
    calls = len(qm_calls(node))
    r = cli("detach", "102", "04:00.0", "--root", str(node), "--yes")
    assert r.code == 0, r.err
    assert "nothing to change" in r.err and "already" in r.err and r.out == ""
    assert conf(node, "102") == before
    assert [c[0] for c in qm_calls(node)[calls:]] == ["status"]


def test_a_device_pending_deletion_on_a_running_vm_can_come_back(node):
    # `delete: hostpci0` waits for the next start; giving the device again is no duplicate:
    # at that start the old entry goes and the new one comes.
    (node / "run/qemu-server/102.pid").write_text("4243\n")
    assert cli("detach", "102", "hostpci0", "--root", str(node), "--yes").code == 0
    r = cli("attach", "102", "04:00.0", "--root", str(node), "--dry-run", "--accept-siblings")
    assert r.code == 0, r.err
    assert "+hostpci1: 0000:04:00.0" in r.out


def test_a_node_without_etc_hostname_is_one_error(node):
    (node / "etc/hostname").unlink()
    r = cli("attach", "101", "01:00", "--root", str(node), "--dry-run")
    assert r.code == ExitCode.BAD_INPUT
    assert r.err.count("\n") == 1 and "etc/hostname" in r.err and "Traceback" not in r.err


def test_detach_of_a_hostpci_key_out_of_range_says_so(node):
    # hostpci16 looks like a key, not a mapping name: say what the keys are.
    r = cli("detach", "102", "hostpci16", "--root", str(node), "--yes")
    assert r.code == ExitCode.BAD_INPUT
    assert "'hostpci16' is not a hostpci key (hostpci0..hostpci15)" in r.err and "mapping" not in r.err


def test_a_primary_gpu_pending_deletion_on_a_running_vm_is_no_second_one(node):
    # Swapping GPUs on a running VM: the old one's deletion and the new one apply at the same start.
    path = node / "etc/pve/qemu-server/104.conf"
    path.write_text("hostpci0: 0000:07:00,x-vga=1\nmachine: q35\nname: x\n\n[PENDING]\ndelete: hostpci0\n")
    (node / "run/qemu-server/104.pid").write_text("4244\n")
    r = cli("attach", "104", "01:00", "--primary-gpu", "--root", str(node), "--dry-run")
    assert r.code == 0, r.err
    assert "+hostpci1: 0000:01:00,x-vga=1" in r.out


def test_a_running_vm_with_other_pending_changes_is_told_they_may_apply_now(node):
    # qm set on a running VM ends with vmconfig_hotplug_pending: pending changes that can be hot-
    # plugged (a NIC, a disk) are applied by this call too; the diff cannot show which.
    path = node / "etc/pve/qemu-server/104.conf"
    path.write_text("machine: q35\nname: x\n\n[PENDING]\nnet0: virtio=BC:24:11:5E:0F:01,bridge=vmbr1\n")
    (node / "run/qemu-server/104.pid").write_text("4244\n")
    r = cli("attach", "104", "01:00", "--root", str(node), "--dry-run")
    assert r.code == 0, r.err
    assert "other pending changes (net0)" in r.err and "hot-plug" in r.err


def test_detach_of_a_slot_takes_every_entry_of_that_slot(node):
    # `detach VMID 01:00` means the whole card, as `attach VMID 01:00` does: an entry per function
    # (as the GUI makes them without "All Functions") goes too.
    path = node / "etc/pve/qemu-server/104.conf"
    path.write_text("hostpci0: 0000:01:00.0,pcie=1\nhostpci1: 0000:01:00.1,pcie=1\nhostpci2: 0000:04:00.0\n"
                    "machine: q35\nname: x\n")
    r = cli("detach", "104", "01:00", "--root", str(node), "--dry-run")
    assert r.code == 0, r.err
    assert "-hostpci0: 0000:01:00.0,pcie=1\n-hostpci1: 0000:01:00.1,pcie=1\n hostpci2" in r.out
    r = cli("detach", "104", "01:00.1", "--root", str(node), "--dry-run")
    assert "-hostpci1: 0000:01:00.1,pcie=1" in r.out and "-hostpci0" not in r.out


TWO_GPUS = """\
gpu
\tmap node=pve1,path=0000:01:00,id=10de:1c82,iommugroup=2
\tmap node=pve1,path=0000:04:00,id=10de:1c82,iommugroup=4
"""


def test_a_mapping_with_two_devices_on_the_node_serves_two_vms(node):
    # Several entries of one node are alternatives: at start qemu-server takes the first one no
    # other VM holds (choose_hostpci_devices), so a second VM may use the same mapping; a third
    # would find none free.
    (node / "etc/pve/mapping").mkdir()
    (node / "etc/pve/mapping/pci.cfg").write_text(TWO_GPUS)
    (node / "etc/pve/qemu-server/104.conf").write_text("hostpci0: mapping=gpu\nname: a\n")
    r = cli("attach", "101", "--mapping", "gpu", "--root", str(node), "--dry-run", "--accept-siblings")
    assert r.code == 0, r.err
    assert "+hostpci0: mapping=gpu" in r.out and "2 devices on this node" in r.err and "VM 104" in r.err
    (node / "etc/pve/qemu-server/105.conf").write_text("hostpci0: mapping=gpu\nname: b\n")
    r = cli("attach", "101", "--mapping", "gpu", "--root", str(node), "--dry-run", "--accept-siblings")
    assert r.code == ExitCode.REFUSED and "already given to VM 104" in r.err


def test_one_vm_may_take_a_mapping_as_often_as_it_has_devices_on_the_node(node):
    # choose_hostpci_devices gives each mapping=gpu entry the first alternative not used yet.
    (node / "etc/pve/mapping").mkdir()
    (node / "etc/pve/mapping/pci.cfg").write_text(TWO_GPUS)
    path = node / "etc/pve/qemu-server/104.conf"
    path.write_text("hostpci0: mapping=gpu\nname: a\n")
    r = cli("attach", "104", "--mapping", "gpu", "--root", str(node), "--dry-run", "--accept-siblings")
    assert r.code == 0, r.err
    assert "+hostpci1: mapping=gpu" in r.out
    path.write_text("hostpci0: mapping=gpu\nhostpci1: mapping=gpu\nname: a\n")
    r = cli("attach", "104", "--mapping", "gpu", "--root", str(node), "--dry-run", "--accept-siblings")
    assert r.code == ExitCode.REFUSED and "mapping 'gpu' assigned more than once" in r.err


def test_a_device_another_running_vm_releases_at_its_next_start_is_said_so(node):
    # VM 102 runs with the SATA controller, detached there (pending delete): it holds the device
    # until it restarts; "detach it there first" would send the user in a circle.
    (node / "etc/pve/qemu-server/102.conf").write_text(VM102 + "\n[PENDING]\ndelete: hostpci0\n")
    r = cli("attach", "101", "04:00.0", "--root", str(node), "--dry-run", "--accept-siblings")
    assert r.code == ExitCode.REFUSED
    assert "VM 102, if it runs, holds it until its next start (its deletion is pending)" in r.err
    assert "detach it there first" not in r.err


def test_the_shown_diff_keeps_every_byte_of_the_lines(node):
    # A config saved with CRLF line ends, or a description with a form feed: the dry run shows the
    # lines as they are (str.splitlines would cut at \x0c and drop the \r).
    text = "#notes\x0cpage two\r\ncores: 2\r\nname: x\r\n"
    (node / "etc/pve/qemu-server/104.conf").write_text(text, newline="")
    r = cli("attach", "104", "01:00", "--root", str(node), "--dry-run")
    assert r.code == 0, r.err
    conf_ = pc.parse_config(text)
    assert r.out == pc.unified_diff(text, pc.set_option(conf_, "hostpci0", "0000:01:00"), "qemu-server/104.conf")
    # and the digest is the SHA1 of those bytes: qm accepts the write
    r = cli("attach", "104", "01:00", "--root", str(node), "--yes")
    assert r.code == 0, r.err


def test_qm_does_not_get_the_api_token(node, monkeypatch):
    monkeypatch.setenv("VFIOKIT_PVE_TOKEN", "5c2f0d6a-0b3e-4c37-9a61-8f4d2b1e7c90")
    r = cli("attach", "101", "01:00", "--pcie", "--primary-gpu", "--root", str(node), "--yes")
    assert r.code == 0, r.err
    assert [c[0] for c in qm_calls(node)] == ["status", "set"]
