"""What the host uses, read from hand-built trees (tests/hostfacts.py) through the real gatherer,
and judged end to end by `vfiokit check --root`."""

from __future__ import annotations

import json
from typing import NamedTuple

import pytest

from tests.conftest import cli
from tests.hostfacts import HostTree
from vfiokit.analyses import host_needs
from vfiokit.render.needs import need_detail, need_loss
from vfiokit.sources import host_usage, sysfs
from vfiokit.sources.capture import build_topology

SATA = "ata1/host0/target0:0:0/0:0:0:0"


@pytest.fixture
def host(tmp_path):
    return HostTree(tmp_path)


def facts(host: HostTree, **kw) -> dict:
    return host_usage.gather(host.root, **kw)


class Worded(NamedTuple):
    """A host need as `check` words it: what is lost and why (render/reasons.py)."""

    kind: str
    critical: bool
    loss: str
    detail: str


def needs_by_address(host: HostTree, **kw) -> dict[str, list[Worded]]:
    raw = sysfs.capture(host.root)
    if kw:
        raw["host_usage"] = facts(host, **kw)
    top = build_topology(raw, "test tree")
    return {str(a): [Worded(n.kind, n.critical, need_loss(n), need_detail(n)) for n in ns]
            for a, ns in host_needs.needs(raw["host_usage"], top).items()}


def test_root_on_nvme_partition_shows_the_chain_and_is_unsafe(host):
    host.disk("01:00.0", "nvme0n1", via="nvme/nvme0", parts=2)
    host.mounts("/dev/nvme0n1p2 / ext4", "/dev/nvme0n1p1 /boot/efi vfat")
    storage = facts(host)["storage"]
    assert {"use": "/", "role": "root", "source": "/dev/nvme0n1p2", "fstype": "ext4",
            "chain": ["nvme0n1p2", "nvme0n1", "nvme0", "0000:01:00.0"], "pci": "0000:01:00.0"} in storage
    assert any(s["role"] == "efi" and s["pci"] == "0000:01:00.0" for s in storage)
    r = cli("check", "01:00.0", "--root", str(host.root))
    assert r.code == 11, r.out + r.err
    assert "/ (root) is on nvme0n1p2 -> nvme0n1 -> nvme0 -> 0000:01:00.0" in r.out
    header, verdict = r.out.splitlines()[:2]
    assert header == f"tree {host.root}"
    assert verdict.startswith("Verdict: unsafe - passing 01:00.0 takes the root file system")


def test_lvm_on_md_over_two_controllers_makes_both_critical(host):
    # / on dm-0 (pve-root) -> md0 -> sda1 (SATA 02:00.1) + nvme1n1p1 (08:00.0)
    host.disk("02:00.1", "sda", via=SATA, parts=1)
    host.disk("08:00.0", "nvme1n1", via="nvme/nvme1", parts=1)
    host.virtual_block("md0", ["sda1", "nvme1n1p1"])
    host.virtual_block("dm-0", ["md0"], dm_name="pve-root")
    host.mounts("/dev/mapper/pve-root / ext4")
    chains = [s["chain"] for s in facts(host)["storage"]]
    assert ["dm-0", "md0", "sda1", "sda", "ata1", "0000:02:00.1"] in chains
    assert ["dm-0", "md0", "nvme1n1p1", "nvme1n1", "nvme1", "0000:08:00.0"] in chains
    got = needs_by_address(host)
    assert [n.critical for n in got["0000:02:00.1"]] == [True]
    assert [n.critical for n in got["0000:08:00.0"]] == [True]
    r = cli("check", "07:00.0", "--root", str(host.root))
    assert r.code == 11
    assert "the root file system (02:00.1, / (root) is on dm-0 -> md0 -> sda1 -> sda -> ata1; 08:00.0" in r.out


def test_swap_partition_and_data_mount_are_told_apart(host):
    host.disk("02:00.1", "sda", via=SATA, parts=2)
    host.disk("08:00.0", "nvme1n1", via="nvme/nvme1")
    host.virtual_block("loop0", [])
    host.mounts("/dev/sda2 /mnt/data xfs", "/dev/loop0 /snap/core squashfs")
    host.swaps("/dev/sda1")
    host.write("dev/sda1", "")
    assert {s["use"] for s in facts(host)["storage"]} == {"/mnt/data", "/dev/sda1"}  # no loop mount
    got = needs_by_address(host)
    assert {(n.loss, n.critical) for n in got["0000:02:00.1"]} == {("the swap", True), ("the disks", False)}
    assert "0000:08:00.0" not in got  # a disk nobody mounts is no host need


def test_mountinfo_by_major_minor_with_escaped_mount_point_and_swap_file(host):
    disk = host.disk("02:00.1", "sda", via=SATA, parts=1)
    majmin = (disk / "sda1/dev").read_text().strip()
    # /dev/root is what the kernel shows without an initramfs: only major:minor finds the disk.
    host.write("proc/self/mountinfo",
               f"22 1 {majmin} / / rw,relatime shared:1 - ext4 /dev/root rw\n"
               f"23 22 {majmin} /srv /mnt/my\\040disk rw - ext4 /dev/root rw\n"
               "24 22 0:5 / /proc rw - proc proc rw\n")
    host.write("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n/swapfile  file  1048572  0  -2\n")
    got = {(s["use"], s["role"]): s["chain"] for s in facts(host)["storage"]}
    chain = ["sda1", "sda", "ata1", "0000:02:00.1"]
    assert got == {("/", "root"): chain, ("/mnt/my disk", "mount"): chain, ("/swapfile", "swap"): chain}


def test_zfs_mirror_members_from_zpool_status(host):
    host.disk("02:00.1", "sda", via=SATA, parts=3)
    host.disk("08:00.0", "nvme1n1", via="nvme/nvme1", parts=3)
    host.write("dev/sda3", "")
    host._link("dev/disk/by-id/ata-WDC_WD40-part3", host.root / "dev/sda3")
    host.mounts("rpool/ROOT/pve-1 / zfs", "rpool/data /rpool/data zfs")
    status = """  pool: rpool
 state: ONLINE
config:

\tNAME                                  STATE     READ WRITE CKSUM
\trpool                                 ONLINE       0     0     0
\t  mirror-0                            ONLINE       0     0     0
\t    /dev/disk/by-id/ata-WDC_WD40-part3  ONLINE       0     0     0
\t    /dev/nvme1n1p3                    ONLINE       0     0     0

errors: No known data errors
"""
    asked = []
    got = facts(host, zpool_status=lambda pool: asked.append(pool) or status)
    assert asked == ["rpool"]  # once per pool, not per dataset
    roots = [s["chain"] for s in got["storage"] if s["role"] == "root"]
    assert roots == [["rpool", "sda3", "sda", "ata1", "0000:02:00.1"],
                     ["rpool", "nvme1n1p3", "nvme1n1", "nvme1", "0000:08:00.0"]]
    assert got["zfs"] == {"rpool": status}


def test_zfs_without_zpool_output_says_so(host):
    host.mounts("rpool/ROOT/pve-1 / zfs")
    got = facts(host)  # not the live root: zpool is not run
    assert got["storage"] == []
    assert any("ZFS pool rpool" in n for n in got["notes"])


def test_default_route_through_bridge_and_bond_reaches_both_nics(host):
    host.nic("06:00.0", "enp6s0")
    host.nic("0a:00.0", "enp10s0")
    host.virtual_nic("bond0", slaves=["enp6s0", "enp10s0"])
    host.virtual_nic("vmbr0", ports=["bond0"])
    host.route4("vmbr0")
    net = {n["interface"]: n for n in facts(host)["network"]}
    assert net["enp6s0"]["default_route"] == [{"family": "ipv4", "via": ["vmbr0", "bond0", "enp6s0"]}]
    assert net["enp10s0"]["default_route"] == [{"family": "ipv4", "via": ["vmbr0", "bond0", "enp10s0"]}]
    r = cli("check", "07:00.0", "--root", str(host.root))
    assert r.code == 11
    assert "the network (06:00.0, default route (ipv4) via vmbr0 -> bond0 -> enp6s0; 0a:00.0, default " \
           "route (ipv4) via vmbr0 -> bond0 -> enp10s0)" in r.out


def test_vlans_by_lower_link_and_by_proc_vlan_config(host):
    host.nic("06:00.0", "enp6s0")
    host.nic("0a:00.0", "enp10s0")
    host.virtual_nic("vmbr0", ports=["enp6s0"])
    host.virtual_nic("vmbr0.10", lower=["vmbr0"])   # kernel 3.x+: lower_vmbr0 link
    host.virtual_nic("enp10s0.20")                  # no lower_ link: /proc/net/vlan/config
    host.write("proc/net/vlan/config", "VLAN Dev name    | VLAN ID\nName-Type: VLAN_NAME_TYPE_RAW_PLUS_VID_NO_PAD\n"
               "enp10s0.20     | 20  | enp10s0\n")
    host.route4("vmbr0.10")
    host.route6("enp10s0.20")
    net = {n["interface"]: n for n in facts(host)["network"]}
    assert net["enp6s0"]["default_route"] == [{"family": "ipv4", "via": ["vmbr0.10", "vmbr0", "enp6s0"]}]
    assert net["enp10s0"]["default_route"] == [{"family": "ipv6", "via": ["enp10s0.20", "enp10s0"]}]


def test_usb_nic_and_keyboard_lead_to_their_controller(host):
    usb = "usb1/1-2/1-2:1.0"
    host.nic("02:00.0", "enx001122334455", via=usb)
    host.route4("enx001122334455")
    kbd = host.pci_dir("02:00.0") / "usb1/1-1/1-1:1.0/0003:046D:C31C.0001/input/input3"
    kbd.mkdir(parents=True)
    (kbd / "name").write_text("Logitech USB Keyboard\n")
    (kbd / "capabilities").mkdir()
    (kbd / "capabilities/ev").write_text("120013\n")  # EV_SYN EV_KEY EV_MSC EV_LED EV_REP
    host._link("sys/class/input/input3", kbd)
    got = facts(host)
    assert got["network"][0]["chain"] == ["enx001122334455", "usb1", "0000:02:00.0"]
    assert got["input"] == [{"what": "keyboard", "name": "Logitech USB Keyboard",
                             "chain": ["input3", "usb1", "0000:02:00.0"], "pci": "0000:02:00.0"}]
    r = cli("check", "07:00.0", "--root", str(host.root))
    assert "the network (02:00.0, default route (ipv4) via enx001122334455 -> usb1;" in r.out
    assert "the USB keyboard" in r.out


def test_console_framebuffer_on_a_gpu_that_is_not_boot_vga(host):
    fb = host.pci_dir("06:00.0") / "graphics/fb0"  # any PCI function will do for the rule
    fb.mkdir(parents=True)
    (fb / "name").write_text("astdrmfb\n")
    host._link("sys/class/graphics/fb0", fb)
    got = needs_by_address(host)
    assert [(n.loss, n.critical, n.detail) for n in got["0000:06:00.0"]] == [
        ("the display", True, "console framebuffer fb0 -> 0000:06:00.0 (astdrmfb)")]


def test_proxmox_vm_configs_and_mappings(host):
    host.write("etc/hostname", "pve\n")
    (host.root / "etc/pve/nodes/pve").mkdir(parents=True)
    (host.root / "etc/pve/qemu-server").symlink_to("nodes/pve/qemu-server")  # as pmxcfs shows it
    host.write("etc/pve/nodes/pve/qemu-server/100.conf",
               "boot: order=scsi0\nhostpci0: 0000:06:00,pcie=1\nname: router\n"
               "[PENDING]\nhostpci1: mapping=nas-sata\n[snap1]\nhostpci2: 04:00.0\n")
    host.write("etc/pve/mapping/pci.cfg", "nas-sata\n\tmap node=other,path=0000:02:00.1,id=1022:43eb\n"
               "\tmap node=pve,path=0000:07:00.0,id=1b4b:9215\n")
    got = facts(host)["proxmox"]
    assert got["vms"] == [
        {"vmid": "100", "key": "hostpci0", "value": "0000:06:00,pcie=1", "pending": False},
        {"vmid": "100", "key": "hostpci1", "value": "mapping=nas-sata", "pending": True}]
    needs = needs_by_address(host)
    assert [n.loss for n in needs["0000:06:00.0"]] == ["VM 100"]
    assert "0000:02:00.1" not in needs  # mapped on another node only
    assert "pending" in needs["0000:07:00.0"][0].detail
    r = cli("check", "07:00.0", "--root", str(host.root))
    assert "07:00.0 is already given to a VM: VM 100 uses it: hostpci1: mapping=nas-sata" in r.out
    assert "06:00.0 is given to another VM (VM 100 uses it: hostpci0: 0000:06:00,pcie=1)" in r.out


def test_proxmox_facts_survive_lines_the_strict_parsers_refuse(host):
    # qemu-server reads keys with a hyphen (amd-sev) and only warns on a line it cannot parse;
    # PVE::SectionConfig ignores a property outside a section. Host facts must not lose the VM.
    host.write("etc/hostname", "pve\n")
    host.write("etc/pve/qemu-server/101.conf",
               "amd-sev: type=std\nnot a key line\nhostpci0: 0000:06:00.0\n")
    host.write("etc/pve/mapping/pci.cfg", "\tmap node=pve,path=0000:02:00.0\n"
               "# a comment\nnas-sata\n\tmap node=pve,path=0000:07:00.0,id=1b4b:9215\n")
    got = facts(host)["proxmox"]
    assert got["vms"] == [{"vmid": "101", "key": "hostpci0", "value": "0000:06:00.0", "pending": False}]
    assert got["mappings"] == [{"id": "nas-sata", "node": "pve", "path": "0000:07:00.0"}]


def test_snapshot_carries_the_facts_so_check_works_offline(host, tmp_path_factory):
    host.disk("08:00.0", "nvme1n1", via="nvme/nvme1", parts=1)
    host.mounts("/dev/nvme1n1p1 / ext4")
    host.nic("0a:00.0", "enp10s0")
    host.virtual_nic("vmbr0", ports=["enp10s0"])
    host.route4("vmbr0")
    snap = tmp_path_factory.mktemp("snap") / "host.json"
    assert cli("snapshot", "-o", str(snap), "--root", str(host.root)).code == 0
    assert json.loads(snap.read_text())["host_usage"]["network"][0]["interface"] == "enp10s0"
    live = cli("check", "07:00.0", "--root", str(host.root), "--json")
    offline = cli("check", "07:00.0", "--snapshot", str(snap), "--json")
    assert (live.code, offline.code) == (11, 11)
    strip = lambda r: {k: v for k, v in json.loads(r.out).items() if k != "source"}  # noqa: E731
    assert strip(live) == strip(offline)


def test_groups_marks_what_the_host_needs(host):
    host.disk("08:00.0", "nvme1n1", via="nvme/nvme1", parts=1)
    host.mounts("/dev/nvme1n1p1 / ext4")
    r = cli("groups", "--root", str(host.root))
    line = next(ln for ln in r.out.splitlines() if ln.lstrip().startswith("08:00.0"))
    assert "host needs the root file system" in line
    gpu = next(ln for ln in r.out.splitlines() if ln.lstrip().startswith("04:00.0"))
    assert "host needs the display" in gpu
    data = json.loads(cli("groups", "--root", str(host.root), "--json").out)
    marks = {d["address"]: d["marks"] for g in data["groups"] for d in g["devices"]}
    assert marks["0000:08:00.0"] == ["host needs the root file system"]
    assert marks["0000:07:00.0"] == []


def test_nothing_readable_gives_empty_facts_and_notes(tmp_path):
    got = host_usage.gather(tmp_path)
    assert (got["storage"], got["network"], got["console"], got["input"], got["proxmox"]) == ([], [], [], [], None)
    assert len(got["notes"]) == 2


def test_a_host_list_with_semicolons_takes_every_id_it_names(host):
    # qemu-server parse_hostpci: `host=a;b` is one alternative, [split(/;/, $host)]: both functions
    # go to the VM together, so the host needs neither back while VM 102 has them.
    host.write("etc/hostname", "pve\n")
    host.write("etc/pve/qemu-server/102.conf", "hostpci0: 0000:06:00.0;0000:07:00.0,pcie=1\nname: x\n")
    needs = needs_by_address(host)
    for addr in ("0000:06:00.0", "0000:07:00.0"):
        assert [n.loss for n in needs[addr]] == ["VM 102"], addr


def test_a_mediated_device_entry_says_proxmox_reserves_nothing(host):
    # qemu-server choose_hostpci_devices: an `mdev` entry is neither counted nor reserved, for a
    # mapping as for a host id; the VM still uses the card, so the host cannot give it away.
    host.write("etc/hostname", "pve\n")
    host.write("etc/pve/qemu-server/103.conf", "hostpci0: mapping=vgpu,mdev=i915-GVTg_V5_4\n")
    host.write("etc/pve/mapping/pci.cfg", "vgpu\n\tmap node=pve,path=0000:06:00.0,id=8086:3e92\n\tmdev 1\n")
    (need,) = needs_by_address(host)["0000:06:00.0"]
    assert need.detail == ("VM 103 uses it: hostpci0: mapping=vgpu,mdev=i915-GVTg_V5_4 as a mediated device "
                           "(Proxmox reserves nothing for it)")
