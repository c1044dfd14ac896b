"""`vfiokit groups` on real trees: names as lspci gives them, the article's script byte for byte,
JSON for scripts, and what a host without IOMMU groups is told."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import cli
from tests.machines import ZOO
from tests.oracle import article_script, lspci
from vfiokit.sources import samples
from vfiokit.sources.synthetic import capture_of
from vfiokit.sources.tree import materialize


@pytest.fixture(params=["zoo", "asus-tuf-b550-plus"])
def tree(request, tmp_path):
    raw = capture_of(ZOO) if request.param == "zoo" else samples.load_raw(request.param)
    return materialize(raw, tmp_path / "root")


def test_seed_format_equals_the_articles_script(tree):
    r = cli("groups", "--root", str(tree), "--format", "seed")
    assert r.code == 0, r.err
    assert r.out == article_script(tree)


def test_human_view_names_each_device_as_lspci_nn(tree):
    r = cli("groups", "--root", str(tree))
    assert r.code == 0, r.err
    for line in lspci(tree, "-nn").splitlines():
        assert line in r.out


def test_zoo_seed_shows_domains_and_unknown_names(tmp_path):
    tree = materialize(capture_of(ZOO), tmp_path / "root")
    out = cli("groups", "--root", str(tree), "--format", "seed").out
    assert "\t0000:00:02.0 Bridge [0655]: NVIDIA Corporation Device fff1\n" in out
    assert "\t0001:00:01.0 Non-Volatile memory controller:" in out


def test_json_envelope_lists_groups_with_devices(tree):
    r = cli("groups", "--root", str(tree), "--json")
    data = json.loads(r.out)
    assert (data["kind"], data["schema"]) == ("groups", 1)
    numbers = [g["number"] for g in data["groups"]]
    assert numbers == sorted(numbers)
    first = data["groups"][0]["devices"][0]
    assert {"address", "vendor_id", "device_id", "class", "class_name", "name", "driver", "flags"} <= set(first)
    assert len(first["address"]) == 12  # with domain


def test_b550_group_15_shows_the_gpu_nic_and_marvell_together():
    data = json.loads(cli("groups", "--sample", "asus-tuf-b550-plus", "--json").out)
    g15 = next(g for g in data["groups"] if g["number"] == 15)
    addrs = {d["address"] for d in g15["devices"]}
    assert {"0000:04:00.0", "0000:06:00.0", "0000:07:00.0", "0000:0a:00.0"} <= addrs
    gpu = next(d for d in g15["devices"] if d["address"] == "0000:04:00.0")
    assert "boot_vga" in gpu["flags"]
    bridge = next(d for d in g15["devices"] if d["address"] == "0000:03:00.0")
    assert "bridge" in bridge["flags"]


def test_missing_pci_ids_degrades_to_numbers(tmp_path, monkeypatch):
    from vfiokit.pciids import PciIds

    monkeypatch.setenv("VFIOKIT_PCI_IDS", str(tmp_path / "absent"))
    monkeypatch.setattr(PciIds, "_system", None)
    tree = materialize(capture_of(ZOO), tmp_path / "root")
    r = cli("groups", "--root", str(tree), "--format", "seed")
    assert r.code == 0
    assert "\t0000:01:00.0 Class 0300: Device 10de:1430 (rev a1)\n" in r.out
    assert "no pci.ids found" in r.err


def test_samples_are_listed():
    r = cli("samples")
    assert "asus-tuf-b550-plus" in r.out


@pytest.mark.parametrize("command", ["groups", "samples", "check", "simulate", "compare"])
def test_every_json_option_says_what_it_gives(command):
    # `--help` is where a user learns what --json prints: one wording on every read command.
    r = cli(command, "--help")
    assert r.code == 0
    assert "--json" in r.out and "Machine-readable output (versioned envelope)." in r.out


def _no_iommu_tree(tmp_path, cpuinfo: str, cmdline: str, release: str = "6.8.12-4-pve"):
    raw = capture_of(ZOO, groups=False)
    tree = materialize(raw, tmp_path / "root")
    (tree / "proc").mkdir(exist_ok=True)
    (tree / "proc/cpuinfo").write_text(cpuinfo)
    (tree / "proc/cmdline").write_text(cmdline + "\n")
    (tree / "proc/sys/kernel").mkdir(parents=True, exist_ok=True)
    (tree / "proc/sys/kernel/osrelease").write_text(release + "\n")
    return tree


@pytest.mark.parametrize(("cpuinfo", "cmdline", "release", "says"), [
    ("vendor_id\t: GenuineIntel\nflags\t\t: fpu vmx hypervisor\n", "quiet", "6.8.12-4-pve", "virtual machine"),
    ("vendor_id\t: AuthenticAMD\nflags\t\t: fpu svm\n", "quiet amd_iommu=off", "6.8.12-4-pve", "amd_iommu=off"),
    ("vendor_id\t: GenuineIntel\nflags\t\t: fpu vmx\n", "quiet", "6.5.13-1-pve", "intel_iommu=on"),
    ("vendor_id\t: GenuineIntel\nflags\t\t: fpu sse\n", "quiet", "6.8.12-4-pve", "firmware"),
    ("vendor_id\t: AuthenticAMD\nflags\t\t: fpu svm\n", "quiet", "6.8.12-4-pve", "AMD-Vi"),
])
def test_no_iommu_says_why_and_how_to_try_a_sample(tmp_path, cpuinfo, cmdline, release, says):
    tree = _no_iommu_tree(tmp_path, cpuinfo, cmdline, release)
    r = cli("groups", "--root", str(tree))
    assert r.code == 5
    # the devices are still listed, under a banner, as Proxmox's GUI does with "No IOMMU detected"
    out = r.out.splitlines()
    assert out[0].startswith(f"tree {tree}") and out[1].startswith("No IOMMU groups: the ")
    assert any(ln.startswith("  ") and "[" in ln for ln in out[2:])
    assert cli("groups", "--root", str(tree), "--json").out.count('"kind": "error"') == 1
    lines = r.err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("vfiokit: error: ") and says in lines[0]
    assert "--sample" in lines[1]


def test_no_groups_although_iommu_units_are_listed_does_not_say_there_are_none(tmp_path):
    tree = _no_iommu_tree(tmp_path, "vendor_id\t: AuthenticAMD\nflags\t\t: fpu svm\n", "quiet")
    (tree / "sys/class/iommu/ivhd0").mkdir(parents=True)
    r = cli("groups", "--root", str(tree))
    assert r.code == 5
    first = r.err.splitlines()[0]
    assert "no IOMMU unit" not in first and "ivhd0" in first and "dmesg" in first

@pytest.mark.parametrize(("option", "kind"), [("--snapshot", "dir"), ("--listing", "dir"), ("--root", "file")])
@pytest.mark.parametrize("command", [("groups",), ("check", "01:00.0"), ("simulate",)])
def test_a_folder_for_a_file_or_a_file_for_a_folder_is_bad_input_in_one_line(tmp_path, option, kind, command):
    # As `compare snapshot:DIR` says it: the path could not be read (3), not a bad command line (2).
    path = tmp_path if kind == "dir" else tmp_path / "plain.txt"
    if kind == "file":
        path.write_text("IOMMU Group 1 01:00.0 VGA compatible controller [0300]: X [10de:1b80]\n")
    r = cli(*command, option, str(path))
    assert r.code == 3, r.err
    assert r.err.count("\n") == 1 and r.err.startswith("vfiokit: error: ") and str(path) in r.err


def test_snapshot_into_a_folder_or_from_a_file_is_one_line(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("")
    r = cli("snapshot", "--root", str(plain), "-o", "-")
    assert r.code == 3 and r.err.count("\n") == 1 and str(plain) in r.err
    tree = tmp_path / "tree"
    materialize(samples.load_raw("asus-tuf-b550-plus"), tree)
    r = cli("snapshot", "--root", str(tree), "-o", str(tmp_path))
    assert r.code == 7, r.err
    assert r.err.count("\n") == 1 and str(tmp_path) in r.err


@pytest.mark.parametrize("other", ["--json", "--predict"])
def test_seed_format_with_json_or_predict_is_refused_not_silently_ignored(other):
    r = cli("groups", "--sample", "asus-tuf-b550-plus", "--format", "seed", other)
    # under --json the refusal is an error envelope, never seed text
    assert r.code == 2 and (json.loads(r.out)["kind"] == "error" if other == "--json" else not r.out)
    assert "--format seed" in r.err and other in r.err


@pytest.mark.parametrize(("content", "says"), [
    (b"8086  Intel Corporation\n\tzzzz  Bad line\nC zz  Broken class\n\tqq  sub\n", "line 2"),
    (bytes(range(256)) * 4, "no pci.ids entries"),
    (b"", "no pci.ids entries"),
    (None, "cannot read"),
    ("fifo", "not a regular file"),  # refused after a stat: no hang waiting for a writer
])
def test_unusable_pci_ids_named_by_the_user_is_said_not_a_traceback(tmp_path, monkeypatch, content, says):
    from vfiokit.pciids import PciIds

    ids = tmp_path / "pci.ids"
    if content is None:
        ids.mkdir()
    elif content == "fifo":
        os.mkfifo(ids)
    else:
        ids.write_bytes(content)
    monkeypatch.setenv("VFIOKIT_PCI_IDS", str(ids))
    monkeypatch.setattr(PciIds, "_system", None)
    r = cli("groups", "--sample", "lab-hostuse")
    assert r.code == 0 and "Traceback" not in r.err
    assert "00:00.0 Class [0600]: Device [8086:29c0]" in r.out or "Intel Corporation" in r.out
    note = next(line for line in r.err.splitlines() if str(ids) in line)
    assert note.startswith("vfiokit: note: ") and says in note


def test_a_damaged_pci_ids_line_is_said_once_it_may_have_cost_a_name(tmp_path):
    from vfiokit.pciids import PciIds

    ids_file = tmp_path / "pci.ids"
    ids_file.write_bytes(b"# pci.ids\n1022  AMD\n\t1450  Root Complex\n\t14xx  damaged\n"
                         b"8086  Intel Corporation\n\t29c0  DRAM Controller\n\n# end\nC 06  Bridge\n")
    ids = PciIds(str(ids_file))
    assert ids.vendor_device(0x1022, 0x1450) == "AMD Root Complex"
    assert ids.vendor_device(0x8086, 0x29c0) == "Intel Corporation DRAM Controller"
    assert ids.missing_note is None  # every name asked for was found: the damaged line cost none
    assert ids.vendor_device(0x1022, 0x1451) == "AMD Device 1451"
    assert ids.missing_note == (f"{ids_file} line 4: not pci.ids syntax, skipped: devices it does not name are "
                                "shown by number")
    assert ids.vendor_device(0x8086, 0x1234) == "Intel Corporation Device 1234"  # Intel's block is whole
    assert ids.class_name(0x0604) == "Bridge [0604]" and ids.class_name(0x0700) == "Class 0700"


def test_every_command_is_listed_and_has_help():
    from vfiokit.cli import COMMANDS

    listing = cli("--help").out
    for name in COMMANDS:
        assert f"  {name} " in listing
        r = cli(name, "--help")
        assert r.code == 0 and r.out.startswith(f"Usage: vfiokit {name}")


def test_json_piped_is_one_line_that_reads_back():
    r = cli("groups", "--sample", "asus-tuf-b550-plus", "--json")
    assert r.code == 0, r.err
    assert r.out.count("\n") == 1 and '", "schema": 1, ' in r.out
    assert json.loads(r.out)["kind"] == "groups"


def test_json_on_a_terminal_is_indented(monkeypatch):
    import io

    from vfiokit.render.envelope import envelope

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdout", Terminal())
    text = envelope("groups", "sample", [], groups=[])
    assert text.startswith('{\n  "vfiokit": ') and json.loads(text)["kind"] == "groups"
