"""Reading below a root folder: links resolved as chroot would, nothing read or written outside the
root, only regular files read, never a hang (issue 13 points 5 and 9).

Every tree is built by hand in `tmp_path` with real FIFOs and symlinks, one rule per test. The cases
that used to hang run vfiokit in a child process with a timeout, so a regression fails instead of
hanging the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bootroot import grub_host, write
from tests.machines import ZOO
from vfiokit import rootfs
from vfiokit.edits import writer
from vfiokit.edits.writer import FileChange, WritePlan
from vfiokit.errors import BadInput, ExitCode, VfiokitError
from vfiokit.sources import host_usage, sysfs
from vfiokit.sources.synthetic import capture_of
from vfiokit.sources.tree import materialize

SRC = Path(__file__).resolve().parents[1] / "src"
OLD = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
NEW = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on"\n'


def _vfiokit(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the vfiokit of this worktree; a hang fails the test at `timeout` instead of hanging CI."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    try:
        return subprocess.run([sys.executable, "-m", "vfiokit", *args], capture_output=True, text=True,
                              timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"vfiokit {' '.join(args)} did not finish within {timeout} s")


# -- resolve_under ---------------------------------------------------------------------------------

def test_an_absolute_link_is_taken_below_the_root(tmp_path: Path) -> None:
    write(tmp_path, "usr/share/grub/default/grub", OLD)
    (tmp_path / "etc/default").mkdir(parents=True)
    (tmp_path / "etc/default/grub").symlink_to("/usr/share/grub/default/grub")
    assert rootfs.resolve_under(str(tmp_path), "/etc/default/grub") == str(tmp_path / "usr/share/grub/default/grub")


def test_a_linked_folder_on_the_way_is_resolved_below_the_root(tmp_path: Path) -> None:
    write(tmp_path, "elsewhere/grub", OLD)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/default").symlink_to("/elsewhere")  # chroot semantics: <root>/elsewhere
    assert rootfs.resolve_under(str(tmp_path), "/etc/default/grub") == str(tmp_path / "elsewhere/grub")
    (tmp_path / "etc/default").unlink()
    (tmp_path / "etc/default").symlink_to("../elsewhere")
    assert rootfs.resolve_under(str(tmp_path), "etc/default/grub") == str(tmp_path / "elsewhere/grub")


def test_a_relative_link_that_climbs_out_is_refused_naming_the_host_path(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/default/grub").symlink_to("../../../outside/grub")
    with pytest.raises(rootfs.OutsideRoot) as e:
        rootfs.resolve_under(str(root), "/etc/default/grub")
    assert str(e.value).startswith("/etc/default/grub: leads outside ") and "\n" not in str(e.value)
    assert e.value.code == ExitCode.BAD_INPUT


def test_on_the_live_root_dotdot_stays_at_slash() -> None:
    assert rootfs.resolve_under("/", "/../../etc") == os.path.realpath("/etc")


def test_a_link_loop_is_one_line_not_a_hang(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/a").symlink_to("b")
    (tmp_path / "etc/b").symlink_to("/etc/a")
    with pytest.raises(BadInput, match=r"^/etc/a/x: too many levels of symbolic links"):
        rootfs.resolve_under(str(tmp_path), "/etc/a/x")


def test_missing_components_are_kept(tmp_path: Path) -> None:
    assert rootfs.resolve_under(str(tmp_path), "/etc/new/file") == str(tmp_path / "etc/new/file")


# -- the capped regular-file reader ------------------------------------------------------------

def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")  # no writer: a plain open() would block forever
    with pytest.raises(rootfs.NotRegular, match="is a FIFO"):
        rootfs.read_file(str(tmp_path / "fifo"))
    assert rootfs.read_attr(str(tmp_path / "fifo"), "fallback") == "fallback"


def test_a_device_is_refused_and_nothing_is_read_past_the_cap(tmp_path: Path) -> None:
    (tmp_path / "zero").symlink_to("/dev/zero")
    with pytest.raises(rootfs.NotRegular, match="is a device"):
        rootfs.read_file(str(tmp_path / "zero"), follow=True)
    with pytest.raises(rootfs.NotRegular, match="symbolic link"):
        rootfs.read_file(str(tmp_path / "zero"))
    write(tmp_path, "big", b"x" * 5000)
    with pytest.raises(BadInput, match="bigger than 4096 bytes"):
        rootfs.read_file(str(tmp_path / "big"), 4096)
    assert rootfs.read_file(str(tmp_path / "big"), 5000) == b"x" * 5000


def test_a_device_fifo_or_link_is_refused_before_any_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening a device has effects of its own (a watchdog's open arms it): what a root planted
    is told apart by its type, never opened, by every reader of a file."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "null").symlink_to("/dev/null")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder/config").symlink_to("/dev/null")
    opened: list[str] = []
    real_open = os.open

    def recording_open(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        opened.append(os.fspath(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", recording_open)
    for path, follow in (("fifo", False), ("null", True), ("null", False)):
        with pytest.raises(rootfs.NotRegular):
            rootfs.read_file(str(tmp_path / path), follow=follow)
    with pytest.raises(rootfs.NotRegular):
        rootfs.read_tail(str(tmp_path / "fifo"), 100)
    folder = real_open(tmp_path / "folder", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(rootfs.NotRegular):
            rootfs.read_at(str(tmp_path / "folder"), folder, "config", 4096)
        with os.scandir(folder) as listing:
            entry = next(iter(listing))
        with pytest.raises(rootfs.NotRegular):
            rootfs.read_listed(str(tmp_path / "folder"), folder, entry, 4096)
    finally:
        os.close(folder)
    assert opened == []


def test_read_attr_strips_and_falls_back(tmp_path: Path) -> None:
    write(tmp_path, "vendor", "0x8086\n")
    assert rootfs.read_attr(str(tmp_path / "vendor")) == "0x8086"
    assert rootfs.read_attr(str(tmp_path / "missing"), "none") == "none"


def test_the_hostname_comes_from_the_kernel_then_etc(tmp_path: Path) -> None:
    assert rootfs.read_hostname(str(tmp_path)) is None
    write(tmp_path, "etc/hostname", "pve.example.org\n")
    assert rootfs.read_hostname(str(tmp_path)) == "pve.example.org"
    write(tmp_path, "proc/sys/kernel/hostname", "node1\n")
    assert rootfs.read_hostname(str(tmp_path)) == "node1"


# -- the writer never writes outside --root (issue 13 point 5) ---------------------------------

def _grub_plan(root: Path) -> WritePlan:
    path = root / "etc/default/grub"
    return WritePlan((FileChange(str(path), OLD, NEW),), (), (), str(root), "boot")


@pytest.mark.parametrize(("link", "target"), [("etc/default/grub", "../../../outside/grub"),
                                                ("etc/default", "../../outside")],
                         ids=["the file", "a folder on its way"])
def test_the_writer_refuses_a_relative_link_that_climbs_out(tmp_path: Path, link: str, target: str) -> None:
    outside = write(tmp_path, "outside/grub", OLD)
    root = tmp_path / "root"
    (root / link).parent.mkdir(parents=True)
    (root / link).symlink_to(target)
    with pytest.raises(VfiokitError) as e:
        writer.apply(_grub_plan(root))
    assert e.value.code == ExitCode.REFUSED
    assert str(e.value).startswith("/etc/default/grub: leads outside") and "\n" not in str(e.value)
    assert outside.read_text() == OLD and not (root / writer.BACKUP_DIR / writer.JOURNAL).exists()


def test_the_writer_takes_an_absolute_linked_folder_below_the_root(tmp_path: Path) -> None:
    inside = write(tmp_path, "elsewhere/grub", OLD)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/default").symlink_to("/elsewhere")
    done = writer.apply(_grub_plan(tmp_path))
    assert inside.read_text() == NEW and (tmp_path / "etc/default").is_symlink()
    assert done.files and writer.read_journal(str(tmp_path))[0]["files"][0]["path"] == "/etc/default/grub"


def test_the_writer_refuses_a_path_outside_its_root(tmp_path: Path) -> None:
    other = write(tmp_path, "other/grub", OLD)
    plan = WritePlan((FileChange(str(other), OLD, NEW),), (), (), str(tmp_path / "root"), "boot")
    with pytest.raises(VfiokitError) as e:
        writer.apply(plan)
    assert e.value.code == ExitCode.REFUSED and other.read_text() == OLD


def test_boot_add_through_a_link_that_climbs_out_writes_nothing(tmp_path: Path) -> None:
    outside = write(tmp_path, "outside/grub", OLD)
    root = grub_host(tmp_path / "root", "debian12")
    (root / "etc/default/grub").unlink()
    (root / "etc/default/grub").symlink_to("../../../outside/grub")
    r = _vfiokit("boot", "add", "intel_iommu=on", "--root", str(root), "--yes")
    assert r.returncode == ExitCode.BAD_INPUT, r.stderr  # refused when reading, before any plan
    assert r.stderr.count("\n") == 1 and "/etc/default/grub" in r.stderr and "Traceback" not in r.stderr
    assert outside.read_text() == OLD


# -- readers never hang, never read the live host (issue 13 point 9) ---------------------------

def test_a_fifo_as_the_grub_file_is_one_line_not_a_hang(tmp_path: Path) -> None:
    root = grub_host(tmp_path, "debian12", running="BOOT_IMAGE=/vmlinuz root=/dev/sda1")
    (root / "etc/default/grub").unlink()
    os.mkfifo(root / "etc/default/grub")
    r = _vfiokit("boot", "status", "--root", str(root))
    assert r.returncode == ExitCode.BAD_INPUT, r.stderr
    assert r.stderr.count("\n") == 1 and "etc/default/grub: is a FIFO" in r.stderr


def test_a_fifo_as_proc_cmdline_is_left_unread(tmp_path: Path) -> None:
    root = grub_host(tmp_path, "debian12")
    (root / "proc").mkdir()
    os.mkfifo(root / "proc/cmdline")
    r = _vfiokit("boot", "status", "--root", str(root), "--json")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


def test_an_absolute_link_in_the_tree_is_read_below_the_root(tmp_path: Path) -> None:
    write(tmp_path, "saved/cmdline", "BOOT_IMAGE=/vmlinuz intel_iommu=on marker-below-root\n")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cmdline").symlink_to("/saved/cmdline")  # the live /saved does not exist
    assert sysfs.read_host(tmp_path).cmdline == "BOOT_IMAGE=/vmlinuz intel_iommu=on marker-below-root"


def test_mountinfo_linked_to_dev_zero_is_not_read_forever(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").symlink_to("/dev/zero")  # below the root: absent
    (tmp_path / "proc/self/mounts").symlink_to("../../../dev/zero")  # climbs out: refused
    code = ("import sys; from vfiokit.sources import host_usage; "
            "f = host_usage.gather(sys.argv[1]); print(len(f['storage']))")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                       timeout=120, env=env, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "0", r.stderr
    assert host_usage.real_below(str(tmp_path), "/proc/self/mounts") is None


def test_address_links_that_point_back_up_do_not_loop_the_walk(tmp_path: Path) -> None:
    tree = materialize(capture_of(ZOO), tmp_path / "root")
    bridge = next((tree / "sys/devices").glob("pci0000:00/0000:00:*"))
    os.symlink("..", bridge / "0000:7e:00.0")
    os.symlink(".", bridge / "0000:7e:00.1")
    r = _vfiokit("groups", "--root", str(tree))
    assert r.returncode == 0, r.stderr
    assert "a link to a folder already read; left out" in r.stderr and "Traceback" not in r.stderr
    assert "7e:00" not in r.stdout
