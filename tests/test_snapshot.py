"""Snapshots: a live tree and its snapshot give the same model; bad files get one clear line."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import cli
from tests.machines import ZOO
from vfiokit.sources import samples, snapshot, sysfs
from vfiokit.sources.capture import build_topology
from vfiokit.sources.synthetic import capture_of
from vfiokit.sources.tree import materialize


def _same_model(a, b):
    assert a.devices == b.devices
    assert a.groups == b.groups
    assert a.host == b.host
    assert a.host_usage == b.host_usage


@pytest.mark.parametrize("machine", ["zoo", "zoo-not-root", "asus-tuf-b550-plus"])
def test_live_tree_and_its_snapshot_give_the_same_model(tmp_path, machine):
    raw = samples.load_raw(machine) if machine == "asus-tuf-b550-plus" else capture_of(ZOO, as_root=machine == "zoo")
    tree = materialize(raw, tmp_path / "root")
    out = tmp_path / "snap.json"
    r = cli("snapshot", "--root", str(tree), "-o", str(out))
    assert r.code == 0, r.err
    _same_model(sysfs.read_topology(tree), snapshot.load(out))
    # ... and the same devices and groups as the machine the tree was laid out from.
    origin = build_topology(raw, "origin")
    assert (origin.devices, origin.groups) == (snapshot.load(out).devices, snapshot.load(out).groups)


def test_snapshot_records_who_captured_it_and_the_kernel(tmp_path):
    tree = materialize(samples.load_raw("asus-tuf-b550-plus"), tmp_path / "root")
    out = tmp_path / "snap.json"
    cli("snapshot", "--root", str(tree), "-o", str(out))
    data = json.loads(out.read_text())
    assert data["captured"]["as_root"] == (os.geteuid() == 0)
    assert data["captured"]["by"]
    assert data["host"]["kernel_release"] == "5.11.22-4-pve"
    assert "root=/dev/mapper/pve-root" in data["host"]["cmdline"]
    assert data["iommu_groups"]["15"]
    assert len(data["devices"]["0000:07:00.0"]["config"]) > 128


def test_not_root_fields_are_unknown_and_said(tmp_path):
    tree = materialize(capture_of(ZOO, as_root=False), tmp_path / "root")
    top = sysfs.read_topology(tree)
    port = top.by_address[next(a for a in top.by_address if str(a) == "0000:00:01.0")]
    assert port.config_size == 64 and port.pcie_type is None and port.acs is None and not port.acs_known
    r = cli("groups", "--root", str(tree), "--predict")
    assert "beyond 64 bytes" in r.err
    # plain groups shows no PCIe type or ACS: it reads each header only, and has nothing to say
    assert "beyond 64 bytes" not in cli("groups", "--root", str(tree)).err


@pytest.mark.parametrize(("content", "says"), [
    ('{"format": "vfiokit-snapshot", "version": 1, "devi', "truncated"),
    ('{"hello": "world"}', "not a vfiokit snapshot"),
    ("IOMMU Group 1\n", "not valid JSON"),
    ('{"format": "vfiokit-snapshot", "version": 99, "devices": {}}', "version 99"),
    ('{"format": "vfiokit-snapshot", "version": 1, "devices": {"0000:zz:00.0": {}}}', "0000:zz:00.0"),
    ('{"format": "vfiokit-snapshot", "version": 1, "devices": {"0000:01:00.0": {"config": "xyz", '
     '"config_size": 64}}}', "not hexadecimal"),
])
def test_bad_snapshot_gives_one_line_naming_the_file(tmp_path, content, says):
    f = tmp_path / "bad.json"
    f.write_text(content)
    r = cli("groups", "--snapshot", str(f))
    assert r.code == 3
    assert r.err.count("\n") == 1
    assert r.err.startswith("vfiokit: error: ") and str(f) in r.err
    assert says in r.err
    assert "Traceback" not in r.err


def test_missing_snapshot_file(tmp_path):
    r = cli("groups", "--snapshot", str(tmp_path / "nope.json"))
    assert r.code == 3 and "cannot read snapshot" in r.err


def test_tree_with_missing_attribute_dangling_link_and_unreadable_config(tmp_path):
    tree = materialize(capture_of(ZOO), tmp_path / "root")
    dev = tree / "sys/devices/pci0000:00/0000:00:1f.2"
    (dev / "class").unlink()
    (dev / "config").unlink()
    (dev / "config").mkdir()  # reading it fails even as root
    os.symlink("../../../devices/pci0000:00/0000:00:09.0", tree / "sys/bus/pci/devices/0000:00:09.0")
    r = cli("groups", "--root", str(tree))
    assert r.code == 0
    assert "0000:00:09.0" in r.err and "does not exist" in r.err
    assert "0000:00:1f.2: sysfs attribute 'class' missing" in r.err
    assert "0000:00:1f.2: config space not readable" in r.err
    assert "Traceback" not in r.err


def test_root_without_pci_bus(tmp_path):
    r = cli("groups", "--root", str(tmp_path))
    assert r.code == 3 and "no PCI bus here" in r.err


def test_snapshot_to_stdout_is_loadable(tmp_path):
    tree = materialize(capture_of(ZOO), tmp_path / "root")
    r = cli("snapshot", "--root", str(tree), "-o", "-")
    f = tmp_path / "s.json"
    f.write_text(r.out)
    _same_model(snapshot.load(f), sysfs.read_topology(tree))


def test_bundled_sample_is_what_its_script_builds():
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    script = repo / "scripts/make_sample_b550.py"
    assert subprocess.run([sys.executable, str(script), "--check"], env=env).returncode == 0


def _edited_snapshot(tmp_path, edit):
    """A snapshot of the lab-hostuse tree (it has host usage), then hand-edited."""
    tree = tmp_path / "tree"
    materialize(samples.load_raw("lab-hostuse"), tree)
    out = tmp_path / "host.json"
    assert cli("snapshot", "--root", str(tree), "-o", str(out)).code == 0
    raw = json.loads(out.read_text())
    edit(raw)
    out.write_text(json.dumps(raw))
    return out


def _first_device(raw):
    return raw["devices"][sorted(raw["devices"])[0]]


@pytest.mark.parametrize(("edit", "says"), [
    (lambda r: r.__setitem__("captured", "yesterday"), "'captured'"),
    (lambda r: r["captured"].__setitem__("as_root", "yes"), "'captured.as_root'"),
    (lambda r: r.__setitem__("host", ["x"]), "'host'"),
    (lambda r: r["host"].__setitem__("cmdline", 5), "'host.cmdline'"),
    (lambda r: r["host"].__setitem__("kernel_release", 6), "'host.kernel_release'"),
    (lambda r: r["host"].__setitem__("dmesg", 7), "'host.dmesg'"),
    (lambda r: r["host"].__setitem__("iommu_units", "dmar0"), "'host.iommu_units'"),
    (lambda r: r.__setitem__("read_notes", "abc"), "'read_notes'"),
    (lambda r: r["iommu_groups"].__setitem__(sorted(r["iommu_groups"])[0], [5]), "iommu group"),
    (lambda r: r["iommu_groups"].__setitem__("99", [sorted(r["devices"])[0]]), "in two IOMMU groups"),
    (lambda r: r["iommu_groups"].__setitem__("99", ["0000:ee:00.0"]), "0000:ee:00.0"),
    (lambda r: r["iommu_groups"].__setitem__("-1", []), "'-1'"),
    (lambda r: _first_device(r).__setitem__("links", {"driver": 5}), "'links'"),
    (lambda r: _first_device(r).__setitem__("attrs", {"boot_vga": 1}), "'attrs'"),
    (lambda r: _first_device(r).__setitem__("files", "reset"), "'files'"),
    (lambda r: _first_device(r).__setitem__("path", 5), "'path'"),
    (lambda r: r.__setitem__("host_usage", ["x"]), "'host_usage'"),
    (lambda r: r["host_usage"].__setitem__("storage", "x"), "'host_usage.storage'"),
    (lambda r: r["host_usage"].__setitem__("storage", [5]), "'host_usage.storage'"),
    (lambda r: r["host_usage"].__setitem__("console", [None]), "'host_usage.console'"),
    (lambda r: r["host_usage"].__setitem__("network", [{"chain": "enp1s0", "pci": "0000:01:00.0"}]),
     "'host_usage.network[].chain'"),
    (lambda r: r["host_usage"].__setitem__("proxmox", "pve"), "'host_usage.proxmox'"),
    (lambda r: r["host_usage"].__setitem__("notes", 5), "'host_usage.notes'"),
])
@pytest.mark.parametrize("command", [("groups",), ("groups", "--json"), ("groups", "--predict"),
                                     ("simulate",), ("check", "03:00.0")])
def test_hand_edited_snapshot_with_wrong_types_is_one_line_naming_the_field(tmp_path, edit, says, command):
    f = _edited_snapshot(tmp_path, edit)
    r = cli(*command, "--snapshot", str(f))
    assert "Traceback" not in r.err
    assert r.code == 3, r.err
    assert r.err.count("\n") == 1 and r.err.startswith("vfiokit: error: ") and str(f) in r.err
    assert says in r.err


def test_snapshot_nested_too_deeply_is_bad_input(tmp_path):
    f = tmp_path / "deep.json"
    f.write_text("[" * 100_000 + "]" * 100_000)
    r = cli("groups", "--snapshot", str(f))
    assert r.code == 3 and r.err.count("\n") == 1 and str(f) in r.err


def test_acpi_device_in_an_iommu_group_is_noted_not_an_error(tmp_path):
    # The AMD IOMMU groups ACPI HID devices (amd_iommu: acpihid_device_group) and the Intel one
    # ACPI namespace devices (probe_acpi_namespace_devices): a group may list e.g. AMDI0020:00.
    tree = materialize(samples.load_raw("lab-hostuse"), tmp_path / "root")
    platform = tree / "sys/devices/platform/AMDI0020:00"
    platform.mkdir(parents=True)
    (tree / "sys/kernel/iommu_groups/2/devices/AMDI0020:00").symlink_to(platform)
    out = tmp_path / "host.json"
    assert cli("snapshot", "--root", str(tree), "-o", str(out)).code == 0
    for source in (("--root", str(tree)), ("--snapshot", str(out))):
        r = cli("groups", *source)
        assert r.code == 0, r.err
        assert "00:1f.2 SATA controller" in r.out
        assert any("AMDI0020:00" in line and "group 2" in line and "not a PCI device" in line
                   for line in r.err.splitlines())
        r = cli("check", "00:1f.2", *source)
        assert r.code == 11 and "Traceback" not in r.err  # its group holds the ICH9 LPC and SMBus


@pytest.mark.parametrize(("attr", "value"), [("vendor", "0x" + "f" * 20), ("device", "-5"),
                                             ("class", "0x1ffffff"), ("revision", "0x1ff"),
                                             ("subsystem_vendor", "0x10000")])
def test_id_attribute_out_of_its_range_is_bad_input(tmp_path, attr, value):
    # Where config space was unreadable the ids come from the attributes, which the kernel prints
    # with their register's width (vendor 16 bits, class 24, revision 8): anything wider is corrupt.
    def edit(raw):
        entry = raw["devices"]["0000:03:00.0"]
        entry["config"] = entry["config_size"] = None
        entry["attrs"] = {"vendor": "0x1b36", "device": "0x0010", "class": "0x010802", "revision": "0x02",
                          "subsystem_vendor": "0x1af4", "subsystem_device": "0x1100", attr: value}
    f = _edited_snapshot(tmp_path, edit)
    r = cli("groups", "--snapshot", str(f))
    assert r.code == 3, r.out
    assert r.err.count("\n") == 1 and str(f) in r.err and "0000:03:00.0" in r.err and attr in r.err


def test_snapshot_saved_with_a_byte_order_mark_still_loads(tmp_path):
    # Windows editors (Notepad) write UTF-8 with a BOM when a snapshot is opened and saved there.
    f = _edited_snapshot(tmp_path, lambda raw: None)
    plain = cli("groups", "--snapshot", str(f)).out
    f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes())
    r = cli("groups", "--snapshot", str(f))
    assert r.code == 0 and r.out == plain
    r = cli("compare", str(f), "sample:lab-hostuse")
    assert r.code == 0, r.err


def test_snapshot_does_not_overwrite_a_file_without_force(tmp_path):
    tree = materialize(samples.load_raw("asus-tuf-b550-plus"), tmp_path / "root")
    out = tmp_path / "snap.json"
    out.write_text("the only record of last week's host\n")
    r = cli("snapshot", "--root", str(tree), "-o", str(out))
    assert r.code == 8 and f"{out} exists: not overwritten" in r.err and "--force" in r.err
    assert out.read_text() == "the only record of last week's host\n"
    r = cli("snapshot", "--root", str(tree), "-o", str(out), "--force")
    assert r.code == 0 and json.loads(out.read_text())["iommu_groups"]["15"]
