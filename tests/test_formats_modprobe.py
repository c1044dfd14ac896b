"""modprobe.d and module-list formats, judged by kmod's own parser (`modprobe --showconfig -C`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vfiokit.errors import BadInput
from vfiokit.formats import initramfs_modules as im
from vfiokit.formats import modprobe

needs_kmod = pytest.mark.skipif(shutil.which("modprobe") is None and not Path("/sbin/modprobe").exists(),
                                reason="kmod not installed (scripts/setup-debian.sh installs it)")


def showconfig(folder: Path) -> list[str]:
    """What kmod reads from the .conf files of `folder` (its options and softdep lines)."""
    exe = shutil.which("modprobe") or "/sbin/modprobe"
    out = subprocess.run([exe, "--showconfig", "-C", str(folder)], capture_output=True, text=True, check=True).stdout
    return [ln for ln in out.split("\n") if ln.startswith(("options vfio", "softdep"))]


@needs_kmod
def test_kmod_reads_the_ids_and_softdeps_vfiokit_writes(tmp_path: Path) -> None:
    text = modprobe.with_binding(None, ["10de:1b80", "10de:10f0"], ["nouveau", "snd_hda_intel"])
    (tmp_path / "vfiokit.conf").write_text(text)
    assert showconfig(tmp_path) == ["options vfio_pci ids=10de:1b80,10de:10f0",
                                    "softdep nouveau pre: vfio-pci", "softdep snd_hda_intel pre: vfio-pci"]
    assert modprobe.vfio_ids(text) == ["10de:1b80", "10de:10f0"]
    assert modprobe.softdeps(text) == ["nouveau", "snd_hda_intel"]


@needs_kmod
def test_adding_keeps_the_users_lines_and_merges_ids(tmp_path: Path) -> None:
    user = modprobe.HEADER + "# my note\\\n" + "options vfio_pci disable_vga=1\n" + "options vfio-pci ids=1002:67df\n"
    text = modprobe.with_binding(user, ["1002:aaf0", "1002:67df"], ["amdgpu"])
    assert text.startswith(modprobe.HEADER + "# my note\\\noptions vfio_pci disable_vga=1\n")
    (tmp_path / "vfiokit.conf").write_text(text)
    # kmod joins a comment ending in a backslash with the next line: disable_vga=1 is commented
    # out, for kmod and for vfiokit's reading alike.
    assert showconfig(tmp_path) == ["options vfio_pci ids=1002:67df,1002:aaf0", "softdep amdgpu pre: vfio-pci"]
    assert [c.verb for c in modprobe.commands(text)] == ["options", "softdep"]
    # Taking back what was added leaves the user's lines as they were.
    back = modprobe.without_binding(text, ["1002:aaf0"], ["amdgpu"])
    assert back == user


def test_taking_everything_back_removes_the_file() -> None:
    text = modprobe.with_binding(None, ["15b7:5006"], ["nvme"])
    assert modprobe.without_binding(text, ["15b7:5006"], ["nvme"]) is None


def test_continued_lines_are_one_command() -> None:
    text = "options vfio-pci \\\n  ids=10de:1b80\nsoftdep nouveau pre: \\\n vfio-pci\n"
    assert modprobe.vfio_ids(text) == ["10de:1b80"]
    assert modprobe.softdeps(text) == ["nouveau"]
    assert modprobe.with_binding(text, ["10de:10f0"], []).startswith("options vfio-pci ids=10de:1b80,10de:10f0\n")


@pytest.mark.parametrize("bad", ["10de", "10de:1b8", "10de:1b80:1043", "xyzw:1b80", "10de:1b80,", "10de:1b80:1:2"])
def test_ids_that_are_not_ids_are_named(bad: str) -> None:
    with pytest.raises(BadInput, match="is not a PCI id"):
        modprobe.parse_ids(bad)


def test_ids_are_lower_case_without_repeats() -> None:
    assert modprobe.parse_ids("10DE:1B80,10de:1b80,10de:1b80:1043:8673") == ["10de:1b80", "10de:1b80:1043:8673"]


@given(st.lists(st.from_regex(r"[0-9a-f]{4}:[0-9a-f]{4}", fullmatch=True), min_size=1, max_size=5, unique=True),
       st.lists(st.sampled_from(["nouveau", "amdgpu", "nvme", "snd_hda_intel", "xhci_hcd"]), unique=True))
def test_add_then_remove_is_the_identity(ids: list[str], drivers: list[str]) -> None:
    user = "options vfio-pci disable_idle_d3=1\n"
    assert modprobe.without_binding(modprobe.with_binding(user, ids, drivers), ids, drivers) == user


def test_virqfd_only_before_6_2() -> None:
    assert im.vfio_modules("6.1.0-18-amd64")[-1] == "vfio_virqfd"
    assert "vfio_virqfd" not in im.vfio_modules("6.8.12-4-pve")
    assert "vfio_virqfd" not in im.vfio_modules(None)


def test_module_lists_keep_the_users_lines() -> None:
    user = "# List of modules\nvfio-pci\nraid1\n"
    text = im.with_modules(user, im.vfio_modules("6.8.12-4-pve"))
    assert text == user + im.MARKER + "\nvfio\nvfio_iommu_type1\n"  # vfio-pci is vfio_pci: listed already
    assert im.listed(text) == ["vfio_pci", "raid1", "vfio", "vfio_iommu_type1"]
    assert im.without_modules(text, im.vfio_modules("6.8.12-4-pve")) == user
    assert im.without_modules(im.with_modules(None, ["vfio"]), ["vfio"]) is None


def test_initramfs_tools_reads_the_modules_file(tmp_path: Path) -> None:
    # hook-functions' add_modules_from_file reading, run by sh: the module names it would copy.
    text = im.with_modules("# comment\nraid1 a=1\n", im.vfio_modules("5.15.0"))
    f = tmp_path / "modules"
    f.write_text(text)
    out = subprocess.run(["sh", "-c", "grep '^[^#]' \"$1\" | while read -r module args; do echo \"$module\"; done",
                          "sh", str(f)], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["raid1", "vfio", "vfio_iommu_type1", "vfio_pci", "vfio_virqfd"]
