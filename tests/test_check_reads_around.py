"""`check` on the live host or --root reads only the functions around its targets
(`sysfs_around`): what it says must be what a read of the whole host says, for every endpoint
and every slot of every lab capture, and it must read far fewer folders on a large host."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.conftest import cli
from vfiokit.analyses.passthrough import judge
from vfiokit.errors import VfiokitError
from vfiokit.model import PciAddress, Topology
from vfiokit.pciids import PciIds
from vfiokit.render.check import verdict_text
from vfiokit.render.documents import check_document
from vfiokit.sources import samples, sysfs
from vfiokit.sources.sysfs_around import read_around
from vfiokit.sources.tree import materialize

IDS = PciIds.system()
LAB = [n for n in samples.names() if n.startswith("lab-")]


def _shown(top: Topology, targets: list[PciAddress]) -> tuple[str, ...]:
    """What check prints for `targets` read as `top`: the text, the JSON (notes included), or the error."""
    try:
        verdict = judge(top, targets)
    except VfiokitError as e:
        return (type(e).__name__, str(e))
    return (*verdict_text(verdict, IDS, top, "--root T"), check_document(top, verdict, IDS))


def _judged(top: Topology, tree: Path, targets: list[PciAddress]) -> Topology:
    """`top` with the targets' reset facts, as check reads them once it knows its targets."""
    return sysfs.with_reset_methods(top, tree, targets)


def _whole(tree: Path, targets: list[PciAddress]) -> Topology:
    return _judged(sysfs.read_topology(tree, reset_methods=False), tree, targets)


@pytest.mark.parametrize("name", LAB)
def test_each_endpoint_and_slot_is_judged_as_from_the_whole_host(tmp_path: Path, name: str) -> None:
    tree = materialize(samples.load_raw(name), tmp_path / "root")
    whole = sysfs.read_topology(tree)
    judged = 0
    for dev in whole.devices:
        for places in ([(dev.address, False)], [(dev.address, True)]):
            partial = read_around(tree, places)
            if partial is None:
                # Only a bridge or a host without groups needs the whole host.
                assert dev.is_bridge or whole.groups is None or dev.iommu_group is None, dev.address
                continue
            targets = [dev.address] if not places[0][1] else [
                d.address for d in whole.devices if d.address.same_slot(dev.address)]
            assert _shown(_judged(partial, tree, targets), targets) == _shown(_whole(tree, targets), targets), (
                dev.address, places)
            assert len(partial.devices) <= len(whole.devices)
            judged += 1
    assert judged or whole.groups is None


def test_a_large_host_is_read_around_the_target_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_sysfs_reading import _count_opens

    # The article's board: 47 functions; the GPU shares group 15 with a NIC and SATA controllers.
    tree = materialize(samples.load_raw("asus-tuf-b550-plus"), tmp_path / "root").resolve()
    opened = _count_opens(monkeypatch)
    whole = sysfs.read_topology(tree)
    endpoint = next(d for d in whole.devices if d.ids == "10de:1430")  # the Quadro M2000, group 15
    opened.clear()
    r = cli("check", str(endpoint.address), "--root", str(tree))
    assert r.code in (0, 10, 11), r.err
    configs = [p for p in opened if p.endswith("/config")]
    assert str(endpoint.address) in {p.rsplit("/", 2)[1] for p in configs}
    assert 0 < len(configs) < len(whole.devices) / 2
    # the reset method of the target only
    assert [p.rsplit("/", 2)[1] for p in opened if p.endswith("/reset_method")] == [str(endpoint.address)]


@pytest.mark.parametrize("words", [["99:00.0"], ["gpu"], ["00:1f"], ["0000:00:1f.9"]])
def test_words_a_partial_read_cannot_answer_get_the_whole_host_s_answer(tmp_path: Path, words: list[str]) -> None:
    tree = materialize(samples.load_raw("lab-hostuse"), tmp_path / "root")
    r = cli("check", *words, "--root", str(tree))
    snap = cli("check", *words, "--sample", "lab-hostuse")
    assert (r.code, r.err.replace(f"--root {tree}", "X").replace(f"tree {tree}", "S")) == (
        snap.code, snap.err.replace("--sample lab-hostuse", "X").replace("sample lab-hostuse", "S")), r.err


def test_a_card_whose_functions_have_groups_of_their_own_is_read_whole(tmp_path: Path) -> None:
    """A multifunction card with ACS (each function its own group, as a NIC's SR-IOV functions):
    its other functions are in no group of the target's, yet the slot word names them all and
    `whole_slot` compares with them, so the read takes the whole slot."""
    from vfiokit.model import PCIE_ENDPOINT, PCIE_ROOT_PORT
    from vfiokit.sources.synthetic import Spec, capture_of

    acs = (0x5F, 0x1D)
    specs = [Spec("0000:00:00.0", 0x1022, 0x1480, 0x060000, group=0),
             Spec("0000:00:01.1", 0x1022, 0x1483, 0x060400, pcie_type=PCIE_ROOT_PORT, acs=acs, secondary_bus=1,
                  group=1),
             *(Spec(f"0000:01:00.{f}", 0x8086, 0x1521, 0x020000, parent="0000:00:01.1", pcie_type=PCIE_ENDPOINT,
                    acs=acs, multifunction=True, driver="igb", reset_method="flr", group=2 + f) for f in range(4))]
    tree = materialize(capture_of(specs), tmp_path / "root")
    card = [PciAddress.parse(f"01:00.{f}") for f in range(4)]
    cases = (([(card[0], True)], card), ([(card[1], False)], card[1:2]), ([(c, False) for c in card], card),
             ([(c, False) for c in card[:2]], card[:2]))  # two functions of four: not the whole card
    for places, targets in cases:
        partial = read_around(tree, places)
        assert partial is not None
        assert _shown(_judged(partial, tree, targets), targets) == _shown(_whole(tree, targets), targets)
    assert "1 device" in _shown(read_around(tree, [(card[0], True)]), card)[1]  # groups of one, judged whole


def _break(tree: Path, how: str, name: str, other: str) -> None:
    """Damage the tree as a bad capture, a race or a hand edit would: `name` is a function's
    folder name, `other` another's."""
    bus = tree / "sys/bus/pci/devices"
    folder = (bus / name).resolve()
    link = folder / "iommu_group"
    if how == "no group link":
        link.unlink()
    elif how == "group link up":  # to a folder that is no group, yet has a devices/ folder
        link.unlink()
        link.symlink_to("../../../../kernel/iommu_groups/..")
        (tree / "sys/kernel/devices").mkdir()
        (tree / "sys/kernel/devices" / name).symlink_to(f"../../devices/{folder.relative_to(tree / 'sys/devices')}")
    elif how == "group link elsewhere":
        target = (bus / other / "iommu_group").readlink()
        link.unlink()
        link.symlink_to(target)
    elif how == "group folder gone":
        group = link.resolve()
        for member in (group / "devices").iterdir():
            member.unlink()
        (group / "devices").rmdir()
    elif how == "stranger in the group":
        (link.resolve() / "devices" / "0000:7f:1f.7").symlink_to("../../../../devices/pci0000:7f/0000:7f:1f.7")
    elif how == "dangling bus link":
        (bus / name).unlink()
        (bus / name).symlink_to("../../../devices/pci0000:00/nowhere")
    elif how == "bus link out of the tree":
        (bus / name).unlink()
        (bus / name).symlink_to("/sys/devices")


BREAKS = ["no group link", "group link up", "group link elsewhere", "group folder gone", "stranger in the group",
          "dangling bus link", "bus link out of the tree"]


@pytest.mark.parametrize("how", BREAKS)
def test_a_damaged_tree_is_read_around_or_whole_never_half(tmp_path: Path, how: str) -> None:
    """Whatever the damage, check answers in one line or judges, and a partial read that answers
    agrees with the whole read; when the two could disagree it reads the whole host."""
    from hypothesis import example, given, settings
    from hypothesis import strategies as st

    raw = samples.load_raw("lab-hostuse")
    names = sorted(raw["devices"])

    @settings(max_examples=12, deadline=None)
    @given(name=st.sampled_from(names), other=st.sampled_from(names))
    @example(name="0000:03:00.0", other="0000:02:00.0")  # a function alone in its group, no slot mates
    def damaged(name: str, other: str) -> None:
        tree = materialize(raw, Path(tempfile.mkdtemp(dir=tmp_path)) / "root")
        _break(tree, how, name, other)
        r = cli("check", name, "--root", str(tree))
        assert r.code in (0, 3, 4, 5, 10, 11), r.err
        assert "Traceback" not in r.err and len(r.err.splitlines()) <= 2, r.err
        partial = read_around(tree, [(PciAddress.parse(name), False)])
        if partial is not None:
            target = [PciAddress.parse(name)]
            assert _shown(_judged(partial, tree, target), target) == _shown(_whole(tree, target), target)

    damaged()
