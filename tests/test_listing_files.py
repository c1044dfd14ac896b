"""The 18 listings people published (tests/fixtures/listings, each with its provenance header): each
reads to the number of groups its header states, and every line that holds a PCI address is either a device or reported.

The candidate lines are counted here with a regex of this test's own, not the reader's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import cli
from vfiokit.model import PciAddress
from vfiokit.sources import listing, listing_reader

LISTINGS = Path(__file__).parent / "fixtures" / "listings"
#: A missing folder gives no files, and the count test below fails on it (never a silent skip).
FILES = sorted(LISTINGS.glob("*.txt"))

#: BB:DD.F with an optional domain, not inside a longer hex run (independent of the reader's own).
CANDIDATE = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{4}:)?[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7](?![0-9A-Fa-f])")


def _header(text: str) -> tuple[int, list[int]]:
    """Expected groups (the `# groups: N` header line) and the numbers of the header lines."""
    header = [i for i, line in enumerate(text.splitlines(), 1) if line.startswith("# ")]
    m = re.search(r"^# groups: (\d+)", text, re.M)
    assert m, "listing without a '# groups: N' header"
    return int(m[1]), header


def test_the_published_listings_are_there():
    assert len(FILES) == 18, f"{LISTINGS} should hold the 18 published listings"


@pytest.mark.parametrize("path", FILES, ids=[p.stem[:40] for p in FILES])
def test_listing_reads_to_its_stated_groups_with_every_device_line_accounted_for(path):
    text = path.read_text()
    expected, header = _header(text)
    read = listing.parse_with_pciids(text, path.name)
    top = read.topology
    assert len(top.groups) == expected

    candidates = {i for i, line in enumerate(text.splitlines(), 1) if CANDIDATE.search(line)}
    parsed = set(read.lines.values())
    reported = {s.line for s in read.skipped}
    assert not parsed & reported
    assert parsed | reported == candidates
    assert len(parsed) + len(reported & candidates) == len(candidates)
    assert len(top.devices) == len(parsed)
    # What the reader left out is only the curator's '# ' header lines, never a line of the paste.
    assert reported <= set(header), [str(s) for s in read.skipped if s.line not in header]


def _read(prefix: str):
    path = next(p for p in FILES if p.name.startswith(prefix))
    return listing.parse_with_pciids(path.read_text(), path.name).topology


def test_flat_lexical_order_with_brackets_and_colons_in_names():
    top = _read("01-")
    g12 = top.by_group[12]
    assert len(g12.members) == 10 and PciAddress.parse("06:00.0") in g12.members
    df = top.by_address[PciAddress.parse("00:18.3")]
    assert (df.vendor_name, df.device_name) == (
        "Advanced Micro Devices, Inc. [AMD]", "Family 17h (Models 00h-0fh) Data Fabric: Device 18h; Function 3")
    gpu = top.by_address[PciAddress.parse("06:00.0")]
    assert (gpu.ids, gpu.class_code, gpu.revision) == ("1002:699f", 0x030000, 0xC7)
    assert gpu.device_name == "Lexa PRO [Radeon RX 550/550X]"
    assert top.by_address[PciAddress.parse("00:08.1")].driver is None
    bridge = top.by_address[PciAddress.parse("00:01.3")]
    assert (bridge.pcie_type, bridge.acs, bridge.parent, bridge.has_reset) == (None, None, None, None)


def test_line_cut_short_keeps_address_and_group_ids_unknown():
    top = _read("04-")
    audio = top.by_address[PciAddress.parse("25:00.1")]
    assert audio.iommu_group == 11 and audio.ids is None and audio.class_id == 0x0403
    assert any("line 57: cut short" in n for n in top.notes)


def test_r15ch13_columns_reset_marks_and_usb_lines():
    top = _read("11-")
    g15 = top.by_group[15]
    assert len(g15.members) == 14  # USB: lines are not devices
    nvme = top.by_address[PciAddress.parse("02:00.0")]
    assert (nvme.ids, nvme.class_name, nvme.device_name, nvme.has_reset) == (
        "144d:a809", "Non-Volatile memory controller", "NVMe SSD Controller 980", True)
    assert top.by_address[PciAddress.parse("00:01.0")].has_reset is False
    assert top.by_address[PciAddress.parse("01:00.1")].iommu_group == 12  # continuation line
    # The script prints no code: it comes from the class name, by pci.ids' class table.
    assert top.by_address[PciAddress.parse("00:01.0")].class_code == 0x060000


def test_prompt_command_and_cmdline_lines_become_host_facts():
    top = _read("15-")
    assert top.host.cmdline.startswith("BOOT_IMAGE=/boot/vmlinuz-6.8.0-49-generic root=UUID=")
    assert top.host.kernel_release == "6.8.0-49-generic"
    assert _read("17-").host.cmdline.endswith("quiet intel_iommu=on")


def test_ls_iommu_k_drivers_subsystems_and_padded_groups():
    top = _read("27-")
    assert [g.number for g in top.groups] == [12]
    sata = top.by_address[PciAddress.parse("0000:01:00.1")]
    assert (sata.driver, sata.subsystem_vendor_id, sata.subsystem_device_id) == ("ahci", 0x1B21, 0x1062)
    assert sata.class_name == "SATA controller" and sata.class_id == 0x0106


def test_device_outside_any_group_is_kept_with_its_group_unknown():
    top = _read("28-")
    mx450 = top.by_address[PciAddress.parse("01:00.0")]
    assert mx450.iommu_group is None and mx450.ids == "10de:1f97"
    assert any("outside any group" in n and "01:00.0" in n for n in top.notes)


def test_hand_edited_paste_with_markdown_headings_out_of_order():
    top = _read("22-")
    assert set(top.by_group[16].members) == {PciAddress.parse("01:00.0"), PciAddress.parse("01:00.1")}
    assert top.by_group[21].members == (PciAddress.parse("08:00.0"),)


def test_groups_cli_on_a_listing_says_what_is_unknown():
    path = next(p for p in FILES if p.name.startswith("13-"))
    r = cli("groups", "--listing", str(path))
    assert r.code == 0, r.err
    assert "  00:1f.2 SATA controller [0106]: Intel Corporation 9 Series Chipset Family SATA Controller " \
           "[AHCI Mode] [8086:8c82]" in r.out
    assert "no config space" in r.err and "drivers are unknown" in r.err


def test_a_line_longer_than_the_documented_cap_is_refused_with_its_number():
    long = "01:00.0 VGA compatible controller: " + "x" * listing_reader.MAX_LINE
    r = cli("groups", "--listing", "-", stdin=f"IOMMU Group 1\n{long}\n")
    assert r.code == 3, r.err
    assert f"line 2 is {len(long)} characters long; a listing line holds at most {listing_reader.MAX_LINE}" in r.err
    assert "Traceback" not in r.err


def test_a_line_kept_out_keeps_a_short_text():
    text = "IOMMU Group 1\n01:00.0 VGA: NVIDIA GP104 [10de:1b81]\n" + "seen at 02:00.0 " + "y" * 3000 + "\n"
    read = listing.parse(text, "paste")
    assert [s.line for s in read.skipped] == [3]
    assert len(read.skipped[0].text) == listing_reader.KEPT_TEXT


def test_more_devices_than_a_pci_domain_is_refused_with_the_limit(monkeypatch):
    monkeypatch.setattr(listing_reader, "MAX_DEVICES", 2)
    text = "IOMMU Group 1\n01:00.0 VGA: A\n01:00.1 Audio: B\n02:00.0 USB: C\n"
    r = cli("groups", "--listing", "-", stdin=text)
    assert r.code == 3, r.err
    assert "line 4: more than 2 devices, a whole PCI domain" in r.err


def test_lines_kept_out_past_the_limit_are_counted_in_one_note(monkeypatch):
    monkeypatch.setattr(listing_reader, "MAX_KEPT_OUT", 2)
    text = "IOMMU Group 1\n01:00.0 VGA: A\n" + "".join(f"see 0{i}:00.0 here\n" for i in range(2, 7))
    read = listing.parse(text, "paste")
    assert [s.line for s in read.skipped] == [3, 4]
    assert "3 more lines holding an address kept out (only the first 2 are listed)" in read.topology.notes
