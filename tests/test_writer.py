"""The one safe writer: atomic replace, owner and mode, symlinks, backups, journal, undo, faults."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.bootroot import write
from vfiokit.edits import writer
from vfiokit.edits.files import write_new_file
from vfiokit.edits.writer import FileChange, Hooks, WritePlan
from vfiokit.errors import ExitCode, VfiokitError

OLD = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
NEW = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on"\n'


def _plan(root: Path, new: str = NEW, commands: tuple[tuple[str, ...], ...] = ()) -> WritePlan:
    path = root / "etc/default/grub"
    old = writer.read_if_present(writer.resolve(str(path), str(root)))
    return WritePlan((FileChange(str(path), old, new),), commands, (), str(root), "boot")


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(writer.TMP_SUFFIX)]


def test_apply_replaces_keeps_mode_and_owner_and_backs_up(tmp_path: Path) -> None:
    target = write(tmp_path, "etc/default/grub", OLD)
    os.chmod(target, 0o640)
    os.chown(target, 1234, 5678)
    done = writer.apply(_plan(tmp_path))
    assert target.read_text() == NEW
    st = target.stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 1234, 5678)
    (backup,) = done.backups
    assert (tmp_path / writer.BACKUP_DIR / backup).read_text() == OLD
    assert backup.startswith("etc/default/grub.")
    (entry,) = writer.read_journal(str(tmp_path))
    assert entry["files"][0]["path"] == "/etc/default/grub" and entry["kind"] == "boot"
    assert _leftovers(target.parent) == []


def test_nothing_changes_nothing_is_written_or_run(tmp_path: Path) -> None:
    target = write(tmp_path, "etc/default/grub", OLD)
    before = target.stat().st_mtime_ns
    ran: list[tuple[str, ...]] = []
    done = writer.apply(_plan(tmp_path, OLD, (("update-grub",),)),
                        Hooks(runner=lambda a: (ran.append(tuple(a)), (0, ""))[1]))
    assert done.files == () and ran == [] and target.stat().st_mtime_ns == before
    assert not (tmp_path / writer.BACKUP_DIR).exists()


def test_a_symlink_is_followed_inside_root_and_stays_a_link(tmp_path: Path) -> None:
    real = write(tmp_path, "usr/share/grub/default/grub", OLD)
    link = tmp_path / "etc/default/grub"
    link.parent.mkdir(parents=True)
    link.symlink_to("/usr/share/grub/default/grub")  # absolute: means below the root
    writer.apply(_plan(tmp_path))
    assert link.is_symlink() and real.read_text() == NEW


def test_a_file_changed_after_the_plan_is_not_overwritten(tmp_path: Path) -> None:
    target = write(tmp_path, "etc/default/grub", OLD)
    plan = _plan(tmp_path)
    target.write_text("someone else's edit\n")
    with pytest.raises(VfiokitError) as e:
        writer.apply(plan)
    assert e.value.code == ExitCode.CONFLICT and target.read_text() == "someone else's edit\n"


def test_refresh_failure_restores_the_file_and_says_so_in_one_line(tmp_path: Path) -> None:
    target = write(tmp_path, "etc/default/grub", OLD)
    with pytest.raises(VfiokitError) as e:
        writer.apply(_plan(tmp_path, commands=(("update-grub",),)),
                     Hooks(runner=lambda a: (1, "/usr/sbin/grub-mkconfig: error: syntax error")))
    assert target.read_text() == OLD
    assert e.value.code == ExitCode.WRITE_FAILED
    msg = str(e.value)
    assert "\n" not in msg and "update-grub failed (exit 1" in msg and "/etc/default/grub restored" in msg


def test_a_missing_refresh_command_restores_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = write(tmp_path, "etc/default/grub", OLD)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(VfiokitError, match="exit 127: command not found"):
        writer.apply(_plan(tmp_path, commands=(("update-grub",),)))
    assert target.read_text() == OLD


def test_interrupted_between_temp_write_and_rename_leaves_the_original(tmp_path: Path) -> None:
    target = write(tmp_path, "etc/default/grub", OLD)
    seen: list[str] = []

    def interrupt(tmp: str, dest: str) -> None:
        seen.append(Path(tmp).read_text())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        writer.apply(_plan(tmp_path), Hooks(before_rename=interrupt))
    assert seen == [NEW] and target.read_text() == OLD and _leftovers(target.parent) == []


def test_killed_between_temp_write_and_rename_leaves_the_original(tmp_path: Path) -> None:
    """A real SIGKILL of the writing process at the worst moment: no cleanup code runs."""
    target = write(tmp_path, "etc/default/grub.d/50-local.cfg", OLD)
    script = textwrap.dedent(f"""
        import os, signal
        from vfiokit.edits.writer import FileChange, Hooks, WritePlan, apply
        plan = WritePlan((FileChange({str(target)!r}, {OLD!r}, {NEW!r}),), root={str(tmp_path)!r}, kind="boot")
        apply(plan, Hooks(before_rename=lambda tmp, dest: os.kill(os.getpid(), signal.SIGKILL)))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                          os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, check=False)
    assert p.returncode == -9
    assert target.read_text() == OLD
    # The leftover temp file is a dot file that no `grub.d/*.cfg` glob picks up...
    (left,) = _leftovers(target.parent)
    assert left.startswith(".") and not left.endswith(".cfg")
    assert sorted(target.parent.glob("*.cfg")) == [target]
    # ...and the next write, holding the lock, clears it.
    writer.apply(WritePlan((FileChange(str(target), OLD, NEW),), root=str(tmp_path), kind="boot"))
    assert target.read_text() == NEW and _leftovers(target.parent) == []


def test_a_read_only_file_is_left_alone(tmp_path: Path) -> None:
    target = write(tmp_path, "etc/default/grub", OLD)
    target.chmod(0o444)
    with pytest.raises(VfiokitError) as e:
        writer.apply(_plan(tmp_path))
    assert e.value.code == ExitCode.WRITE_FAILED and "read-only (mode 0444)" in str(e.value)
    assert target.read_text() == OLD


def test_a_read_only_file_system_is_reported_and_nothing_changes(tmp_path: Path) -> None:
    etc = tmp_path / "etc/default"
    etc.mkdir(parents=True)
    staging = write(tmp_path, "staging/grub", OLD)
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(etc)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root and mount rights")
    try:
        (etc / "grub").write_text(staging.read_text())
        subprocess.run(["mount", "-o", "remount,ro", str(etc)], check=True)
        with pytest.raises(VfiokitError) as e:
            writer.apply(_plan(tmp_path))
        assert e.value.code == ExitCode.WRITE_FAILED and "Read-only file system" in str(e.value)
        assert "\n" not in str(e.value) and (etc / "grub").read_text() == OLD
    finally:
        subprocess.run(["umount", str(etc)], check=False)


def test_a_second_writer_waits_its_turn(tmp_path: Path) -> None:
    import fcntl

    write(tmp_path, "etc/default/grub", OLD)
    lock = tmp_path / writer.BACKUP_DIR / ".lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(VfiokitError) as e:
            writer.apply(_plan(tmp_path))
    assert e.value.code == ExitCode.CONFLICT and (tmp_path / "etc/default/grub").read_text() == OLD


def test_undo_restores_step_by_step(tmp_path: Path) -> None:
    target = write(tmp_path, "etc/default/grub", OLD)
    clock = iter(datetime.datetime(2026, 1, 1, 12, 0, s, tzinfo=datetime.UTC) for s in range(10))
    hooks = Hooks(now=lambda: next(clock))
    writer.apply(_plan(tmp_path), hooks)
    third = NEW.replace("on", "on iommu=pt")
    writer.apply(_plan(tmp_path, third), hooks)
    plan = writer.undo_plan(str(tmp_path), "boot")
    assert plan.notes == () and "-GRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=on iommu=pt\"" in plan.diff()
    writer.apply(plan, hooks)
    assert target.read_text() == NEW
    writer.apply(writer.undo_plan(str(tmp_path), "boot"), hooks)
    assert target.read_text() == OLD
    with pytest.raises(VfiokitError, match="nothing to undo"):
        writer.undo_plan(str(tmp_path), "boot")


def test_undo_of_a_created_file_removes_it(tmp_path: Path) -> None:
    path = tmp_path / "etc/default/grub.d/vfio.cfg"
    path.parent.mkdir(parents=True)
    writer.apply(WritePlan((FileChange(str(path), None, 'GRUB_CMDLINE_LINUX_DEFAULT="iommu=pt"\n'),),
                      root=str(tmp_path), kind="boot"))
    assert path.stat().st_mode & 0o777 == 0o644
    writer.apply(writer.undo_plan(str(tmp_path), "boot"))
    assert not path.exists()


def test_write_new_file_goes_through_the_writer(tmp_path: Path) -> None:
    out = tmp_path / "host.json"
    write_new_file(str(out), "{}\n")
    assert out.read_text() == "{}\n" and out.stat().st_mode & 0o777 == 0o644
    out.chmod(0o600)
    write_new_file(str(out), "[]\n")
    assert out.read_text() == "[]\n" and out.stat().st_mode & 0o777 == 0o600
    assert _leftovers(tmp_path) == [] and not (tmp_path / "var").exists()


def test_undo_warns_about_a_later_hand_edit_and_non_utf8_bytes_survive(tmp_path: Path) -> None:
    target = write(tmp_path, "etc/default/grub", b'# caf\xe9 (latin-1)\n' + OLD.encode())
    old = writer.read_if_present(str(target))
    writer.apply(WritePlan((FileChange(str(target), old, old + "# vfiokit\n"),), root=str(tmp_path), kind="boot"))
    with open(target, "ab") as f:
        f.write(b"# by hand\n")
    plan = writer.undo_plan(str(tmp_path), "boot")
    assert "-# by hand\n" in plan.diff() and "# caf\ufffd (latin-1)" in plan.diff()
    assert plan.notes == ("/etc/default/grub was changed after vfiokit wrote it; undo also discards that",)
    writer.apply(plan)
    assert target.read_bytes() == b'# caf\xe9 (latin-1)\n' + OLD.encode()


@pytest.mark.parametrize(("old", "new"), [
    ("root=ZFS=rpool/ROOT/pve-1 boot=zfs", "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt"),
    ("root=ZFS=rpool/ROOT/pve-1 boot=zfs", "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n"),
    ("a\nb\n", "a\nb\nc"),
    ("a\nb", "a\nc\nb"),
])
def test_the_diff_of_a_file_without_final_newline_is_what_patch_applies(tmp_path: Path, old: str,
                                                                         new: str) -> None:
    # /etc/kernel/cmdline written with `echo -n` (or by an editor) has no final newline: the plan's
    # diff must still be a well-formed patch that turns the old file into exactly the new one.
    target = write(tmp_path, "etc/kernel/cmdline", old)
    plan = WritePlan((FileChange(str(target), old, new),), (), (), str(tmp_path), "boot")
    diff = plan.diff()
    assert all(not ln.startswith(("-", "+", " ")) or ln.endswith("\n") for ln in diff.splitlines(True))
    subprocess.run(["patch", "-s", str(target)], input=diff.encode(), check=True)
    assert target.read_bytes() == new.encode()


def test_the_diff_splits_lines_at_newlines_only(tmp_path: Path) -> None:
    # A form feed or \x1e inside a line (str.splitlines would split there) is part of the line.
    old = "GRUB_DEFAULT=0\n# page\x0cbreak\x1e\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n"
    new = old.replace('"quiet"', '"quiet iommu=pt"')
    target = write(tmp_path, "etc/default/grub", old)
    diff = WritePlan((FileChange(str(target), old, new),), (), (), str(tmp_path), "boot").diff()
    assert "No newline" not in diff
    subprocess.run(["patch", "-s", str(target)], input=diff.encode(), check=True)
    assert target.read_bytes() == new.encode()


@pytest.mark.parametrize("line", [
    b"[1, 2]\n", b'{"id": "x", "kind": "boot", "files": [{"path": "/etc/default/grub"}]}\n',
    b"\xff\xfe\n", b'{"id": "x", "kind": "boot", "files": "etc"}\n', b'"text"\n'])
def test_a_damaged_journal_is_one_error_naming_its_line(tmp_path: Path, line: bytes) -> None:
    good = (b'{"id": "a", "kind": "boot", "undoes": null, "commands": [], "files": []}\n')
    write(tmp_path, f"{writer.BACKUP_DIR}/{writer.JOURNAL}", good + line)
    with pytest.raises(VfiokitError) as e:
        writer.undo_plan(str(tmp_path), "boot")
    assert e.value.code == ExitCode.BAD_INPUT
    assert str(e.value).startswith(f"{tmp_path}/{writer.BACKUP_DIR}/{writer.JOURNAL}: line 2")
