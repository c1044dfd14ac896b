"""Properties of the listing reader: any model written in any format people paste reads back to the
same groups (and the same ids, classes, names where the format carries them); any text at all
gives a model or the reader's own error, nothing else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles.listing_render import FORMATS

from vfiokit.errors import BadInput
from vfiokit.model import Device, Group, PciAddress, Topology
from vfiokit.sources import listing

#: Vendor names as pci.ids spells them; none is a word-prefix of another, as in pci.ids.
VENDORS = {
    0x1022: "Advanced Micro Devices, Inc. [AMD]",
    0x1002: "Advanced Micro Devices, Inc. [AMD/ATI]",
    0x8086: "Intel Corporation",
    0x10DE: "NVIDIA Corporation",
    0x10EC: "Realtek Semiconductor Co., Ltd.",
    0x1B4B: "Marvell Technology Group Ltd.",
}
CLASSES = ["Host bridge", "PCI bridge", "VGA compatible controller", "Audio device", "SATA controller",
           "USB controller", "Non-Volatile memory controller", "Ethernet controller",
           "Encryption controller", "Non-Essential Instrumentation", "Class", "SMBus"]
# Name pieces with what makes real names hard: brackets, colons, slashes, semicolons, parentheses.
WORD = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-./,+#", min_size=1, max_size=8)
PIECE = st.one_of(
    WORD,
    WORD.map(lambda w: f"[{w}]"),
    st.tuples(WORD, WORD).map(lambda t: f"[{t[0]}/{t[1]}]"),
    WORD.map(lambda w: f"({w})"),
    WORD.map(lambda w: f"{w}:"),
    WORD.map(lambda w: f"{w};"),
    st.sampled_from(["bus[E:B]", "Device 18h; Function 0", "Data Fabric: Device 18h", "(Models 00h-0fh)"]),
)
NAME = st.lists(PIECE, min_size=1, max_size=6).map(" ".join).filter(
    lambda s: not s.endswith(("...", "…")) and s.split()[0] not in ("Device", "->"))


@st.composite
def topologies(draw) -> Topology:
    domain = draw(st.sampled_from([0, 0, 1]))
    addrs = draw(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 31), st.integers(0, 7)),
                          min_size=1, max_size=14, unique=True))
    devices = []
    groups: dict[int, list[PciAddress]] = {}
    numbers = draw(st.lists(st.integers(0, 120), min_size=1, max_size=8, unique=True))
    for i, (bus, slot, fn) in enumerate(addrs):
        addr = PciAddress(domain if i % 2 else 0, bus, slot, fn)
        group = draw(st.sampled_from(numbers))
        vendor = draw(st.sampled_from(sorted(VENDORS)))
        base_sub = draw(st.sampled_from([0x0600, 0x0604, 0x0300, 0x0403, 0x0106, 0x0C03, 0x0108, 0x0200]))
        devices.append(Device(
            address=addr, vendor_id=vendor, device_id=draw(st.integers(0, 0xFFFF)),
            class_code=base_sub << 8 | draw(st.integers(0, 255)),
            revision=draw(st.sampled_from([0, 1, 0xA1, 0xC7])),
            driver=draw(st.sampled_from([None, "vfio-pci", "ahci"])),
            iommu_group=group, has_reset=draw(st.booleans()),
            vendor_name=VENDORS[vendor], device_name=draw(NAME),
            class_name=draw(st.sampled_from(CLASSES))))
        groups.setdefault(group, []).append(addr)
    return Topology(devices=tuple(sorted(devices, key=lambda d: d.address)),
                    groups=tuple(Group(n, tuple(sorted(m))) for n, m in sorted(groups.items())),
                    source="generated")


def _groups(top: Topology) -> dict[int, set[PciAddress]]:
    return {g.number: set(g.members) for g in top.groups}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(top=topologies(), fmt=st.sampled_from(sorted(FORMATS)))
def test_any_model_in_any_format_reads_back_to_the_same_groups(top, fmt):
    write, carries = FORMATS[fmt]
    text = write(top)
    read = listing.parse(text, fmt, VENDORS.get, set(VENDORS.values()))
    back = read.topology
    assert _groups(back) == _groups(top), text
    assert not [s for s in read.skipped if "device" in s.reason], text
    for d in top.devices:
        b = back.by_address[d.address]
        if "ids" in carries:
            assert b.ids == d.ids
        if "class" in carries:
            assert b.class_id == d.class_id
        if "full_class" in carries:
            assert b.class_code == d.class_code
        if "class_name" in carries:
            assert b.class_name == d.class_name
        if "names" in carries:
            assert (b.vendor_name, b.device_name) == (d.vendor_name, d.device_name), text
        if "revision" in carries:
            assert (b.revision or 0) == d.revision
        if "reset" in carries:
            assert b.has_reset == d.has_reset
        if "driver" in carries:
            # `-k` prints a line only for a bound driver: with none bound anywhere, nothing says -k.
            k_listing = any(x.driver for x in top.devices)
            assert b.driver == ((d.driver or "") if k_listing else None)


PIECES_OF_LISTINGS = [
    "IOMMU Group 1", "IOMMU group 2:", "IOMMU Group  12: ", "Group 3:\t", "### Group 4 ###", "├── 5",
    "\t01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [10de:1b80] (rev a1)",
    "0000:00:1f.2 SATA controller [0106] Intel Corporation Device [8086:", "[8086:43ef] [R] 00:14.2  RAM",
    "/sys/kernel/iommu_groups/7/devices/0000:00:1f.3", "│ 0x010601 │ 0xa282 │ 0000:00:17.0 │ 5 │",
    "│ class │ device │ id │ iommugroup │", "Kernel driver in use: vfio-pci", "Subsystem: X [1b21:1062]",
    "root@pve:~# cat /proc/cmdline", "uname -r", "\x1b[01;34m02:00.0\x1b[0m", "01:00.0 \"VGA\" \"N [10de]\"",
    "```", "> 03:00.0 0300: 10de:1b80 (rev a1)", "USB:\t\t[1d6b:0002]", "IOMMU Group 99999999999999999999",
    "Slot:\t0000:02:00.0", "Class:\tVGA [0300]", "ProgIf:\t30", "IOMMUGroup:\t4", "Rev:\tzz",
    "Flags: bus master, fast devsel, IOMMU group 3", "", "Driver:\tahci",
    # issue 13: more digits than int() reads, and a digit that isdigit() takes but int() does not
    "IOMMU Group " + "9" * 4400, "Flags: bus master, IOMMU group " + "7" * 4400, "IOMMUGroup:\t²",
    "│ 0x030000 │ 0x1b80 │ 0000:01:00.0 │ " + "5" * 4400 + " │",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=80), st.sampled_from(PIECES_OF_LISTINGS)), max_size=25))
def test_any_text_gives_a_model_or_the_readers_own_error(lines):
    try:
        read = listing.parse("\n".join(lines), "fuzz")
    except BadInput as e:
        assert str(e).startswith("fuzz: ")
        return
    assert read.topology.groups
