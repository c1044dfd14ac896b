"""How the live reader reads a tree: each folder and file once, nothing a command does not use, and
the same model (or the same error) as the snapshot of the tree. Counts and facts, never times."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import cli
from tests.machines import ZOO
from vfiokit.errors import BadInput
from vfiokit.model import PciAddress, Topology
from vfiokit.sources import doctor_facts, samples, sysfs
from vfiokit.sources.capture import build_topology
from vfiokit.sources.synthetic import capture_of
from vfiokit.sources.tree import materialize


def _functions(tree: Path) -> list[Path]:
    """The function folders below /sys/devices, each once (links left out)."""
    return [p for p in (tree / "sys/devices").rglob("*") if len(p.name) == 12 and p.name[4] == ":"
            and p.is_dir() and not p.is_symlink()]


def _count_opens(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count every `os.open` by the path it names (relative to its dir_fd's folder)."""
    opened: Counter[str] = Counter()
    real_open = os.open

    def counting_open(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        where = os.readlink(f"/proc/self/fd/{dir_fd}") if dir_fd is not None else ""
        opened[os.path.join(where, os.fspath(path))] += 1
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", counting_open)
    return opened


def test_each_function_folder_is_opened_once_and_its_config_read_once(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    tree = materialize(capture_of(ZOO), tmp_path / "root").resolve()
    functions = _functions(tree)
    opened = _count_opens(monkeypatch)
    top = sysfs.read_topology(tree)
    assert len(top.devices) == len(functions)
    for folder in functions:
        assert opened[str(folder)] == 1, folder
        assert opened[str(folder / "config")] == 1, folder


def test_reading_a_topology_gathers_no_doctor_facts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `doctor` reads module lists, vfio ids and more (doctor_facts.gather); groups and check do not.
    tree = materialize(samples.load_raw("lab-hostuse"), tmp_path / "root")

    def refuse(root: str) -> dict:
        raise AssertionError(f"doctor facts gathered for {root}")

    monkeypatch.setattr(doctor_facts, "gather", refuse)
    assert sysfs.read_topology(tree).devices
    for command in (("groups",), ("check", "00:1f.2")):
        r = cli(*command, "--root", str(tree))
        assert "doctor facts gathered" not in r.err and "Traceback" not in r.err, r.err


def test_groups_reads_no_reset_method_check_and_simulate_their_targets_only(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # groups shows no reset method, so the live reader skips that file; check judges its targets'.
    tree = materialize(samples.load_raw("lab-hostuse"), tmp_path / "root").resolve()
    assert len([f for f in _functions(tree) if (f / "reset_method").exists()]) > 2
    opened = _count_opens(monkeypatch)
    assert cli("groups", "--root", str(tree)).code == 0
    assert not [p for p in opened if p.endswith("/reset_method")]
    assert cli("check", "03:00.0", "05:00.0", "--root", str(tree)).code in (0, 10, 11)
    assert sorted(p.rsplit("/", 2)[1] for p in opened if p.endswith("/reset_method")) == [
        "0000:03:00.0", "0000:05:00.0"]
    # simulate judges the reset of its --device targets only (their verdicts), else none
    opened.clear()
    assert cli("simulate", "--root", str(tree), "--json").code == 0
    assert not [p for p in opened if p.endswith("/reset_method")]
    assert cli("simulate", "--device", "nvme", "--root", str(tree), "--json").code == 0
    assert [p.rsplit("/", 2)[1] for p in opened if p.endswith("/reset_method")] == ["0000:03:00.0"]


@pytest.mark.parametrize("name", [n for n in samples.names()
                                  if n.startswith("lab-") and samples.load_raw(n)["iommu_groups"]])
def test_check_judges_as_it_did_when_it_read_every_reset_method(tmp_path: Path, name: str) -> None:
    """The targets' reset methods, read once they are known, give the verdict a full read gives:
    for every endpoint of every lab capture, and with one whose reset methods were all disabled."""
    from vfiokit.analyses.passthrough import judge
    from vfiokit.pciids import PciIds
    from vfiokit.render.check import verdict_text
    from vfiokit.render.documents import check_document

    def shown(top: Topology, a: PciAddress) -> tuple[str, str]:
        verdict = judge(top, [a])
        return verdict_text(verdict, ids, top, ""), check_document(top, verdict, ids)

    raw = samples.load_raw(name)
    some = next(k for k, d in raw["devices"].items() if "reset_method" in d["attrs"])
    raw["devices"][some]["attrs"]["reset_method"] = ""  # pci.c reset_method_store: all disabled
    tree = materialize(raw, tmp_path / "root")
    ids = PciIds.system()
    full, lean = sysfs.read_topology(tree), sysfs.read_topology(tree, reset_methods=False)
    judged = [d.address for d in full.devices if not d.is_bridge and d.iommu_group is not None]
    assert judged
    for a in judged:
        assert shown(sysfs.with_reset_methods(lean, tree, [a]), a) == shown(full, a), a
    assert any(r.code == "no-reset" for a in judged for r in judge(full, [a]).reasons)


@pytest.mark.parametrize("name", ["zoo", *samples.names()])
def test_a_read_without_reset_methods_differs_only_there(tmp_path: Path, name: str) -> None:
    """Without reset methods an endpoint's folder is not listed: its reset facts are unknown
    (None), everything else is what the full read says, on every sample and the zoo."""
    raw = capture_of(ZOO) if name == "zoo" else samples.load_raw(name)
    tree = materialize(raw, tmp_path / "root")
    full, lean = sysfs.read_topology(tree), sysfs.read_topology(tree, reset_methods=False)
    assert [d._replace(reset_methods=None, has_reset=d.has_reset if d.is_bridge else None)
            for d in full.devices] == list(lean.devices)
    assert (full.groups, full.notes, full.host) == (lean.groups, lean.notes, lean.host)
    # and the targets' facts, read afterwards, are the full read's
    targets = [d.address for d in full.devices]
    assert sysfs.with_reset_methods(lean, tree, targets).devices == full.devices


@pytest.mark.parametrize("name", ["zoo", *samples.names()])
def test_a_read_without_drivers_differs_only_there(tmp_path: Path, name: str) -> None:
    """Without drivers (plain `simulate`) no `driver` link is read: each driver is unknown (None),
    everything else is what the read with drivers says, on every sample and the zoo."""
    raw = capture_of(ZOO) if name == "zoo" else samples.load_raw(name)
    tree = materialize(raw, tmp_path / "root")
    full = sysfs.read_topology(tree, reset_methods=False)
    bare = sysfs.read_topology(tree, reset_methods=False, drivers=False)
    assert [d._replace(driver=None) for d in full.devices] == list(bare.devices)
    assert (full.groups, full.notes, full.host) == (bare.groups, bare.notes, bare.host)


@pytest.mark.parametrize("name", ["zoo", *samples.names()])
def test_a_read_of_config_headers_differs_only_in_what_lies_past_them(tmp_path: Path, name: str) -> None:
    """Without capabilities (plain `groups`) each config space is read to its 64-byte header:
    PCIe type and ACS are unknown, as for a reader that is not root, and everything else is what
    the full read says, on every sample and the zoo; no note calls the rest unreadable."""
    raw = capture_of(ZOO) if name == "zoo" else samples.load_raw(name)
    tree = materialize(raw, tmp_path / "root")
    full = sysfs.read_topology(tree, reset_methods=False)
    header = sysfs.read_topology(tree, reset_methods=False, capabilities=False)
    assert [d._replace(is_pcie=None, pcie_type=None, acs=None, acs_known=False,
                       config_size=None if d.config_size is None else min(d.config_size, 64))
            for d in full.devices] == list(header.devices)
    assert [n for n in full.notes if "beyond 64 bytes" not in n] == list(header.notes)
    assert (full.groups, full.host) == (header.groups, header.host)


def _config_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes asked of every read of a `config` file, from now on."""
    sizes: list[int] = []
    configs: set[int] = set()
    real_open, real_read = os.open, os.read

    def opening(path, flags, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        (configs.add if os.path.basename(os.fspath(path)) == "config" else configs.discard)(fd)
        return fd

    def reading(fd: int, n: int) -> bytes:
        if fd in configs:
            sizes.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(os, "open", opening)
    monkeypatch.setattr(os, "read", reading)
    return sizes


def test_groups_reads_config_headers_and_shows_what_a_full_read_shows(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from vfiokit.sources import sysfs_walk

    tree = materialize(samples.load_raw("lab-hostuse"), tmp_path / "root").resolve()
    full = sysfs.read_topology(tree, reset_methods=False)
    sizes = _config_reads(monkeypatch)
    r = cli("groups", "--root", str(tree), "--json")
    assert r.code == 0 and len(sizes) == len(full.devices) and set(sizes) == {64}
    with monkeypatch.context() as m:  # what it printed is what a read of all of config space shows
        m.setattr(sysfs_walk, "HEADER", sysfs_walk.CONFIG_SPACE)
        sizes.clear()
        assert cli("groups", "--root", str(tree), "--json").out == r.out and set(sizes) == {4097}
    sizes.clear()
    assert cli("groups", "--root", str(tree), "--predict").code == 0
    assert len(sizes) == len(full.devices) and set(sizes) == {4097}  # all of it, and proof it ended


def test_simulate_reads_drivers_only_for_the_verdicts_it_gives(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The groups with and without an override show no driver; --device and --alone judge them.
    from vfiokit.pciids import PciIds
    from vfiokit.render.documents import run_simulate

    tree = materialize(samples.load_raw("lab-hostuse"), tmp_path / "root").resolve()
    full = sysfs.read_topology(tree)
    assert [d for d in full.devices if d.driver]
    read: list[str] = []
    real_readlink = os.readlink

    def counting_readlink(path: str, *, dir_fd: int | None = None) -> str:
        read.append(os.fspath(path))
        return real_readlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "readlink", counting_readlink)
    r = cli("simulate", "--root", str(tree), "--json")
    assert r.code == 0 and "driver" not in read
    # what it printed is what a read with every driver gives
    assert r.out == run_simulate(full, PciIds.system(), None).document(full.source)
    for option in ("--device", "--alone"):
        read.clear()
        r = cli("simulate", option, "nvme", "--root", str(tree), "--json")
        assert r.code == 0 and "driver" in read, option


def test_an_endpoint_is_read_without_opening_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = materialize(samples.load_raw("lab-hostuse"), tmp_path / "root").resolve()
    listed: list[str] = []
    opened: list[str] = []
    real_scandir, real_open = os.scandir, os.open

    def counting_scandir(path):  # type: ignore[no-untyped-def]
        if isinstance(path, int):
            listed.append(os.readlink(f"/proc/self/fd/{path}"))
        return real_scandir(path)

    def counting_open(path, flags, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
        if flags & os.O_DIRECTORY:
            opened.append(os.fspath(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    monkeypatch.setattr(os, "open", counting_open)
    top = sysfs.read_topology(tree, reset_methods=False)
    bridges = {str(tree / "sys/devices" / d.sysfs_path) for d in top.devices if d.is_bridge}
    # the root bus's folder and the bridges' are listed, each once; no endpoint's is even opened
    assert bridges and sorted(listed) == sorted(opened) == sorted({str(tree / "sys/devices/pci0000:00"), *bridges})
    # and what was read is what listing every folder reads, but for the files only a listing sees
    full = sysfs.read_topology(tree)
    assert [d._replace(reset_methods=None, has_reset=d.has_reset if d.is_bridge else None)
            for d in full.devices] == list(top.devices)


def _first_bridge(tree: Path) -> Path:
    return sorted((tree / "sys/devices").glob("pci0000:00/0000:00:*"))[0]


def _fifo_config(tree: Path) -> None:
    config = _functions(tree)[1] / "config"
    config.unlink()
    os.mkfifo(config)


def _linked_config(tree: Path) -> None:
    config = _functions(tree)[2] / "config"
    config.unlink()
    config.symlink_to("/etc/hostname")


def _short_config_and_bad_attribute(tree: Path) -> None:
    dev = _functions(tree)[2]
    (dev / "config").write_bytes(b"\x86\x80" * 10)  # 20 bytes: the id attributes are read
    (dev / "vendor").write_text("0xzz\n")


def _links_back_up(tree: Path) -> None:
    os.symlink("..", _first_bridge(tree) / "0000:7e:00.0")
    os.symlink(".", _first_bridge(tree) / "0000:7e:00.1")


def _link_out_of_the_root(tree: Path) -> None:
    os.symlink("../../../../../elsewhere", _first_bridge(tree) / "0000:00:1d.6")


def _dangling_bus_link_and_missing_attribute(tree: Path) -> None:
    dev = tree / "sys/devices/pci0000:00/0000:00:1f.2"
    (dev / "class").unlink()
    (dev / "config").unlink()
    (dev / "config").mkdir()
    os.symlink("../../../devices/pci0000:00/0000:00:09.0", tree / "sys/bus/pci/devices/0000:00:09.0")


def _acpi_member(tree: Path) -> None:
    platform = tree / "sys/devices/platform/AMDI0020:00"
    platform.mkdir(parents=True)
    group = sorted((tree / "sys/kernel/iommu_groups").iterdir())[0]
    (group / "devices/AMDI0020:00").symlink_to(platform)


def _member_in_two_groups(tree: Path) -> None:
    member = next((sorted((tree / "sys/kernel/iommu_groups").iterdir())[0] / "devices").iterdir())
    (tree / "sys/kernel/iommu_groups/998/devices").mkdir(parents=True)
    (tree / "sys/kernel/iommu_groups/998/devices" / member.name).symlink_to(os.readlink(member))


def _member_not_read(tree: Path) -> None:
    (tree / "sys/kernel/iommu_groups/999/devices").mkdir(parents=True)
    (tree / "sys/kernel/iommu_groups/999/devices/0000:00:1e.7").symlink_to("/sys/devices/pci0000:00/0000:00:1e.7")


def _folder_that_is_no_address(tree: Path) -> None:
    (_first_bridge(tree) / "0000:00:zz.0").mkdir()


def _copied_function(tree: Path) -> None:
    functions = _functions(tree)
    shutil.copytree(functions[2], functions[0] / functions[2].name, symlinks=True)


def _no_groups(tree: Path) -> None:
    shutil.rmtree(tree / "sys/kernel/iommu_groups")


@pytest.mark.parametrize("edit", [
    _fifo_config, _linked_config, _short_config_and_bad_attribute, _links_back_up, _link_out_of_the_root,
    _dangling_bus_link_and_missing_attribute, _acpi_member, _member_in_two_groups, _member_not_read,
    _folder_that_is_no_address, _copied_function, _no_groups,
], ids=lambda f: f.__name__.strip("_"))
def test_the_live_reader_models_a_tree_as_its_snapshot_does(tmp_path: Path, edit: Callable[[Path], None]) -> None:
    # read_topology models each function as it reads it; build_topology models the capture of the
    # same tree: the model, the notes and the first error must be the same.
    (tmp_path / "elsewhere").mkdir()
    tree = materialize(capture_of(ZOO), tmp_path / "root")
    edit(tree)

    def model(read: Callable[[], object]) -> object:
        try:
            top = read()
        except BadInput as e:
            return f"error: {e}"
        return (top.devices, top.groups, top.host, top.notes, top.source, top.host_usage)

    live = model(lambda: sysfs.read_topology(tree))
    assert live == model(lambda: build_topology(sysfs.capture(tree), f"tree {tree}"))
