"""Device lines behind a prefix (issue 16 point 1), and class codes from class names.

Real material: tests/fixtures/listings/29-zephyrwc3-7950x-prefixed-script.txt (a custom script's ` (N) 00:01.0 ...`
lines under `IOMMU GROUP N` headers) and the article's plain-lspci listing."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.conftest import cli
from vfiokit.model import PciAddress
from vfiokit.sources import listing

FIXTURES = Path(__file__).parent / "fixtures"
ZEPHYR = FIXTURES / "listings" / "29-zephyrwc3-7950x-prefixed-script.txt"
B550 = FIXTURES / "article-b550-without-override.txt"


def test_a_custom_scripts_prefixed_device_lines_are_read_under_their_headers():
    read = listing.parse_with_pciids(ZEPHYR.read_text(), ZEPHYR.name)
    top = read.topology
    assert len(top.groups) == 45 and len(top.devices) == 53
    assert not read.skipped
    gpu = top.by_address[PciAddress.parse("01:00.0")]
    assert (gpu.iommu_group, gpu.ids, gpu.class_id, gpu.revision) == (12, "10de:2504", 0x0300, 0xA1)
    assert gpu.device_name == "GA106 [GeForce RTX 3060 Lite Hash Rate]"
    assert set(top.by_group[11].members) == {PciAddress.parse(f"00:18.{f}") for f in range(8)}
    shown = cli("groups", "--listing", str(ZEPHYR))
    assert shown.code == 0 and "IOMMU group 12 (alone)" in shown.out


@pytest.mark.parametrize("prefix", ["[3] ", "#12 ", "-> ", "12:03:44 ", " (0) ", "3. ", "* ", "[2024-05-01 12:03:44] "])
def test_each_kind_of_prefix_people_print_is_read(prefix):
    text = (f"IOMMU Group 3:\n{prefix}0000:01:00.0 VGA compatible controller [0300]: NVIDIA Corporation "
            f"GP104 [10de:1b80] (rev a1)\n{prefix}01:00.1 Audio device [0403]: NVIDIA Corporation GP104 "
            f"High Definition Audio Controller [10de:10f0] (rev a1)\n")
    read = listing.parse_with_pciids(text, "paste")
    assert {str(a) for a in read.topology.by_group[3].members} == {"0000:01:00.0", "0000:01:00.1"}
    assert read.topology.by_address[PciAddress.parse("01:00.0")].ids == "10de:1b80"


def test_prose_that_mentions_an_address_stays_prose():
    text = textwrap.dedent("""\
        IOMMU Group 3:
        [3] 01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [10de:1b80] (rev a1)
        see 01:00.1 for the audio part, it is in the same slot
        I passed 02:00.0 through last week
        """)
    read = listing.parse_with_pciids(text, "paste")
    assert [str(a) for a in read.topology.by_group[3].members] == ["0000:01:00.0"]
    assert [s.line for s in read.skipped] == [3, 4]
    # Outside any group a prefixed address is not guessed into one.
    outside = listing.parse_with_pciids("[1] 05:00.0 USB controller [0c03]: X [1b21:1242]\n" + text, "paste")
    assert outside.topology.by_address[PciAddress.parse("01:00.0")].iommu_group == 3
    assert PciAddress.parse("05:00.0") not in outside.topology.by_address


def test_prose_that_starts_like_a_group_header_opens_no_group():
    text = textwrap.dedent("""\
        IOMMU Group 1:
        \t00:01.0 Host bridge [0600]: Advanced Micro Devices, Inc. [AMD] Device [1022:1482]
        Group 13 has my GPU at 01:00.0, sadly
        \t00:02.0 Host bridge [0600]: Advanced Micro Devices, Inc. [AMD] Device [1022:1482]
        """)
    read = listing.parse_with_pciids(text, "paste")
    assert [g.number for g in read.topology.groups] == [1]
    assert len(read.topology.by_group[1].members) == 2
    assert [(s.line, s.reason) for s in read.skipped] == [(3, "not a device line the reader knows")]


def test_headers_without_any_readable_device_say_so_with_the_first_device_like_line():
    text = "IOMMU GROUP 0\n  device 00:01.0 Host bridge\nIOMMU GROUP 1\n  device 00:01.1 PCI bridge\n"
    r = cli("groups", "--listing", "-", stdin=text)
    assert r.code == 3
    assert ("2 IOMMU group header(s) found (the first at line 1) but no device line was read under "
            "them; the first line that looked like a device: line 2:") in r.err
    assert "device 00:01.0 Host bridge" in r.err and "no IOMMU group found" not in r.err


def test_plain_lspci_class_names_give_class_codes_so_bridges_are_known():
    top = listing.parse_with_pciids(B550.read_text(), B550.name).topology
    assert top.by_address[PciAddress.parse("03:00.0")].class_id == 0x0604
    assert top.by_address[PciAddress.parse("04:00.0")].class_id == 0x0300
    r = cli("check", "04:00.0", "--listing", str(B550))
    bridges = [ln for ln in r.out.splitlines() if "PCI bridge" in ln]
    assert len(bridges) == 8 and all(ln.lstrip().startswith("bridge left alone") for ln in bridges)
    assert "class codes of 20 device(s) read from their class names" in r.err
