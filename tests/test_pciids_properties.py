"""Properties of the pci.ids reader: whatever lines a pci.ids holds (vendor blocks, damaged lines,
comments, classes, a vendor listed twice, CR line ends), each name it gives is the one a plain
line-by-line reading of the file gives, and asking never raises. The reader finds blocks with
`bytes.find` and regular expressions instead of reading lines; this reading is the oracle."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from vfiokit.pciids import PciIds

IDS = [0x0000, 0x1022, 0x10DE, 0x8086, 0xABCD, 0xFFFF]
NAME = st.text("abcXYZ 0123456789-[]()#\t\r", max_size=12)
HEX4 = st.sampled_from(IDS).map(lambda i: f"{i:04x}")
#: What starts a block: a vendor, a class, or what a reader must not take for either.
HEAD = st.one_of(
    st.tuples(HEX4, NAME).map(lambda t: f"{t[0]}  {t[1]}"),  # a vendor
    st.tuples(HEX4, NAME).map(lambda t: f"{t[0]} {t[1]}"),  # a vendor line with one space: damaged
    st.tuples(st.sampled_from(["00", "02", "06"]), NAME).map(lambda t: f"C {t[0]}  {t[1]}"),
    st.just("\r"),
)
#: What a block holds: devices (or subclasses, under a class), subsystems, comments, empty and
#: damaged lines.
BODY = st.one_of(
    st.tuples(HEX4, NAME).map(lambda t: f"\t{t[0]}  {t[1]}"),
    st.tuples(st.sampled_from(["00", "04"]), NAME).map(lambda t: f"\t{t[0]}  {t[1]}"),
    st.tuples(HEX4, HEX4, NAME).map(lambda t: f"\t\t{t[0]} {t[1]}  {t[2]}"),
    NAME.map(lambda n: f"# {n}"),
    st.just(""),
    NAME.map(lambda n: f"\t{n}"),  # damaged, most of the time
)
LINES = st.lists(st.tuples(HEAD, st.lists(BODY, max_size=6)), max_size=8).map(
    lambda blocks: [line for head, body in blocks for line in (head, *body)])


def read_line_by_line(lines: list[str]) -> dict[int, tuple[str, dict[int, str]]]:
    """Each vendor's name and device names, from its first block (as lspci would refuse a file
    listing it twice): a block runs to the next line that is not indented, a comment or empty."""
    vendors: dict[int, tuple[str, dict[int, str]]] = {}
    devices: dict[int, str] | None = None
    for line in lines:
        if line == "" or line.startswith("#"):
            continue
        if not line.startswith("\t"):
            devices = None
            if (m := re.fullmatch(r"([0-9a-f]{4})  (.*)", line, re.S)) and int(m[1], 16) not in vendors:
                devices = {}
                vendors[int(m[1], 16)] = (m[2].strip(), devices)
        elif devices is not None and (m := re.fullmatch(r"\t([0-9a-f]{4})  (.*)", line, re.S)):
            devices.setdefault(int(m[1], 16), m[2].strip())
    return vendors


@settings(max_examples=400, deadline=None)
@given(lines=LINES, newline_at_end=st.booleans())
def test_names_are_those_of_a_line_by_line_reading(tmp_path_factory, lines, newline_at_end):
    path = tmp_path_factory.mktemp("ids") / "pci.ids"
    path.write_bytes(("\n".join(lines) + ("\n" if newline_at_end else "")).encode())
    expected = read_line_by_line(lines)
    ids = PciIds(str(path))
    for vendor in IDS:
        name, devices = expected.get(vendor, (None, {}))
        assert ids.vendor(vendor) == name
        for device in IDS:
            assert ids.device(vendor, device) == (devices.get(device) if name is not None else None)
    for class_id in (0x0000, 0x0200, 0x0604, 0x0404):
        assert isinstance(ids.class_name(class_id), str)  # an empty name in the file is shown empty, as lspci does
    note = ids.missing_note
    assert note is None or str(path) in note
