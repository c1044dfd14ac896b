"""`vfiokit compare`: the article's listings against the bundled sample of its board, and the
changes people compare across (BIOS or kernel update, a card added, an override, another board)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import cli
from vfiokit.analyses import grouping
from vfiokit.analyses.compare import compare
from vfiokit.model import Device, Group, PciAddress, Topology
from vfiokit.sources import listing, samples, snapshot
from vfiokit.sources.synthetic import Spec, capture_of

FIXTURES = Path(__file__).parent / "fixtures"
ARTICLE = FIXTURES / "article-b550-groups.txt"          # typed as the article shows it
OVERRIDE = FIXTURES / "article-b550-acs-override.txt"   # the article's listing after the override
A = PciAddress.parse


def test_the_articles_listing_matches_the_sample_on_the_groups_it_shows():
    r = cli("compare", str(ARTICLE), "sample:asus-tuf-b550-plus", "--common")
    assert r.code == 0, r.out + r.err
    assert "identical" in r.out
    assert "left out 0 device(s) only in A and 27 only in B" in r.err


def test_the_articles_listing_against_the_whole_sample_only_lacks_the_groups_it_did_not_show():
    r = cli("compare", f"listing:{ARTICLE}", "sample:asus-tuf-b550-plus", "--json")
    assert r.code == 1
    data = json.loads(r.out)
    assert data["kind"] == "compare" and data["identical"] is False
    assert [data[k] for k in ("splits", "merges", "renumbered", "moved", "vanished", "membership")] == \
        [[]] * 6
    sample = samples.load("asus-tuf-b550-plus")
    shown = {g for g in (0, 1, 14, 15, 16)}
    not_shown = {str(d.address) for d in sample.devices if d.iommu_group not in shown}
    assert {d["address"] for d in data["appeared"]} == not_shown


def test_the_override_listing_splits_group_15_into_one_group_per_device():
    r = cli("compare", "sample:asus-tuf-b550-plus", str(OVERRIDE), "--common", "--json")
    assert r.code == 1
    data = json.loads(r.out)
    sample = samples.load("asus-tuf-b550-plus")
    g15 = [str(a) for a in sample.by_group[15].members]
    assert data["splits"] == [{"group": 15, "into": [{"group": 15 + i, "devices": [a]}
                                                     for i, a in enumerate(g15)]}]
    assert data["merges"] == data["renumbered"] == data["moved"] == []
    marvell = next(m for m in data["membership"] if m["address"] == "0000:07:00.0")
    assert (marvell["from_group"], marvell["to_group"], marvell["gained"]) == (15, 28, [])
    assert len(marvell["lost"]) == 15
    human = cli("compare", "sample:asus-tuf-b550-plus", str(OVERRIDE), "--common")
    assert "split: group 15 of A is now 16 groups in B" in human.out
    assert "  group 28: 07:00.0 SATA controller: Marvell Technology Group Ltd. Device 9215 (rev 11)" in human.out


def _top(devices: list[tuple[str, str, int]], source: str) -> Topology:
    """(address, ids, group) triples as a topology, as a snapshot would give it."""
    devs, groups = [], {}
    for addr, ids, group in devices:
        v, d = (int(x, 16) for x in ids.split(":"))
        devs.append(Device(A(addr), vendor_id=v, device_id=d, class_code=0x020000, iommu_group=group))
        groups.setdefault(group, []).append(A(addr))
    return Topology(tuple(sorted(devs, key=lambda d: d.address)),
                    tuple(Group(n, tuple(sorted(m))) for n, m in sorted(groups.items())), source=source)


BEFORE = [("00:01.0", "1022:1483", 1), ("01:00.0", "10de:1b80", 2), ("01:00.1", "10de:10f0", 2),
          ("02:00.0", "8086:1539", 3), ("03:00.0", "1b4b:9215", 4), ("00:14.0", "1022:790b", 5)]


def test_identical_sources_say_so_and_exit_0():
    c = compare(_top(BEFORE, "a"), _top(BEFORE, "b"))
    assert c.identical
    assert cli("compare", "sample:asus-tuf-b550-plus", "sample:asus-tuf-b550-plus").code == 0


def test_bios_update_renumbers_groups():
    after = [(a, i, g + 10) for a, i, g in BEFORE]
    c = compare(_top(BEFORE, "a"), _top(after, "b"))
    assert [(r.old, r.new) for r in c.renumbered] == [(g, g + 10) for g in (1, 2, 3, 4, 5)]
    assert not (c.splits or c.merges or c.membership or c.moved)


def test_card_added_upstream_moves_devices_and_appears():
    # A new NVMe at 02:00.0 shifts the NIC and the Marvell SATA one bus down.
    after = [("00:01.0", "1022:1483", 1), ("01:00.0", "10de:1b80", 2), ("01:00.1", "10de:10f0", 2),
             ("02:00.0", "144d:a808", 3), ("03:00.0", "8086:1539", 4), ("04:00.0", "1b4b:9215", 6),
             ("00:14.0", "1022:790b", 5)]
    c = compare(_top(BEFORE, "a"), _top(after, "b"))
    assert [(m.old.short, m.new.short) for m in c.moved] == [("02:00.0", "03:00.0"), ("03:00.0", "04:00.0")]
    assert [d.address.short for d in c.appeared] == ["02:00.0"]
    assert not c.vanished
    assert [(r.old, r.new) for r in c.renumbered] == [(3, 4), (4, 6)]


def test_kernel_update_merges_groups_and_changes_membership():
    # The NIC and the Marvell controller end up with the GPU (a kernel that lost an ACS quirk).
    after = [(a, i, 2 if a in ("02:00.0", "03:00.0") else g) for a, i, g in BEFORE]
    c = compare(_top(BEFORE, "a"), _top(after, "b"))
    assert [(m.group, [p.group for p in m.parts]) for m in c.merges] == [(2, [2, 3, 4])]
    gpu = next(ch for ch in c.membership if ch.address == A("01:00.0"))
    assert gpu.gained == (A("02:00.0"), A("03:00.0")) and gpu.lost == ()
    back = compare(_top(after, "a"), _top(BEFORE, "b"))
    assert [(s.group, [p.group for p in s.parts]) for s in back.splits] == [(2, [2, 3, 4])]


def test_device_replaced_at_the_same_address_vanishes_and_appears():
    after = [(a, "8086:125c" if a == "02:00.0" else i, g) for a, i, g in BEFORE]
    c = compare(_top(BEFORE, "a"), _top(after, "b"))
    assert [d.ids for d in c.vanished] == ["8086:1539"] and [d.ids for d in c.appeared] == ["8086:125c"]


def test_two_boards_from_snapshot_and_listing_files_detected_by_content(tmp_path):
    specs = [Spec(a, int(i[:4], 16), int(i[5:], 16), 0x020000, group=g) for a, i, g in BEFORE]
    snap = tmp_path / "board-a.json"
    snap.write_text(snapshot.dumps(capture_of(specs)))
    post = tmp_path / "board-b.txt"
    post.write_text("".join(f"IOMMU Group {g} {a} Ethernet controller [0200]: Some Vendor Device [{i}]\n"
                            for a, i, g in BEFORE if a != "03:00.0"))
    r = cli("compare", str(snap), str(post))
    assert r.code == 1
    assert "vanished (only in A): 03:00.0 Ethernet controller: " in r.out
    assert cli("compare", str(snap), str(snap)).code == 0


@pytest.mark.parametrize("spec, says", [
    ("nosuchfile", "vfiokit: error: 'nosuchfile' is not a file, nor live, root:DIR"),
    ("sample:nope", "vfiokit: error: no sample named 'nope'"),
    ("listing:", "vfiokit: error: 'listing:': nothing after 'listing:'"),
])
def test_bad_source_spec_is_one_line(spec, says):
    r = cli("compare", spec, "sample:asus-tuf-b550-plus")
    assert r.code == 3 and r.err.startswith(says) and r.err.count("\n") <= 2


def test_both_from_stdin_is_a_usage_error():
    assert cli("compare", "-", "-", stdin="").code == 2


@pytest.mark.parametrize("pair", [("listing:-", "listing:-"), ("-", "listing:-"), ("listing:-", "-")])
def test_both_from_stdin_spelled_as_listing_is_a_usage_error_too(pair):
    # Not "no IOMMU group found" about B, which would only have found standard input used up.
    r = cli("compare", *pair, stdin="IOMMU Group 1 01:00.0 VGA compatible controller [0300]: X [10de:1b80]\n")
    assert r.code == 2 and "standard input" in r.err


def test_card_added_and_kernel_merging_groups_as_a_user_reads_it(tmp_path):
    before, after = tmp_path / "before.txt", tmp_path / "after.txt"
    before.write_text(
        "IOMMU Group 2 01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [10de:1b80] (rev a1)\n"
        "IOMMU Group 3 02:00.0 Ethernet controller [0200]: Intel Corporation I211 Gigabit [8086:1539] (rev 03)\n")
    after.write_text(
        "IOMMU Group 2 01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [10de:1b80] (rev a1)\n"
        "IOMMU Group 2 03:00.0 Ethernet controller [0200]: Intel Corporation I211 Gigabit [8086:1539] (rev 03)\n"
        "IOMMU Group 5 02:00.0 Non-Volatile memory controller [0108]: Samsung Electronics Co Ltd NVMe [144d:a808]\n")
    r = cli("compare", str(before), str(after))
    assert r.code == 1
    assert "merged: group 2 of B gathers groups 2, 3 of A" in r.out
    assert "  from group 3: 03:00.0 Ethernet controller: Intel Corporation I211 Gigabit (rev 03) (was 02:00.0)" in r.out
    assert "moved: 02:00.0 -> 03:00.0 Ethernet controller" in r.out
    assert "appeared (only in B): 02:00.0 Non-Volatile memory controller: Samsung Electronics Co Ltd NVMe" in r.out
    assert "A and B: drivers are unknown" in r.err


def test_the_override_listing_is_what_the_group_model_predicts_for_the_sample():
    """The article's listing after `pcie_acs_override=downstream,multifunction` against the groups
    the kernel's algorithm gives the sample with that override (the simulate issue's model)."""
    sample = samples.load("asus-tuf-b550-plus")
    predicted = grouping.predict_groups(sample, grouping.parse_override("downstream,multifunction"))
    number = {a: g.number for g in predicted for a in g.members}
    top = replace(sample, groups=predicted, source="prediction",
                  devices=tuple(d._replace(iommu_group=number.get(d.address)) for d in sample.devices))
    c = compare(top, listing.load(str(OVERRIDE)), common_only=True)
    assert c.identical, (c.splits, c.merges, c.renumbered, c.membership)


def test_common_with_no_device_in_common_is_not_called_identical():
    # Two different machines share no device: "identical on the devices both show" would be vacuous.
    r = cli("compare", "sample:asus-tuf-b550-plus", "sample:lab-hostuse", "--common")
    assert r.code == 1
    assert "identical" not in r.out and "no device in common" in r.out
    body = json.loads(cli("compare", "sample:asus-tuf-b550-plus", "sample:lab-hostuse", "--common", "--json").out)
    assert body["identical"] is False and body["in_common"] == 0
