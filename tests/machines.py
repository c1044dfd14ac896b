"""Small hand-made machines for tests of one rule at a time (real lab captures live in
src/vfiokit/samples/lab). Each is a list of `Spec`; `synthetic.capture_of` turns it into a capture."""

from __future__ import annotations

from vfiokit.model import PCIE_ENDPOINT, PCIE_ROOT_PORT
from vfiokit.sources.synthetic import Spec

# Names lspci must render in every way names.c can: known pair, known vendor with unknown
# device, unknown vendor, subclass known, only the base class known, nothing known; revisions
# zero and non-zero; a second PCI domain (which makes lspci print domains on every line).
ZOO = [
    Spec("00:00.0", 0x8086, 0x29C0, 0x060000, group=0),
    Spec("00:01.0", 0x8086, 0x29C1, 0x060400, pcie_type=PCIE_ROOT_PORT, acs=(0x5F, 0x1D),
         secondary_bus=1, group=1, driver="pcieport"),
    Spec("01:00.0", 0x10DE, 0x1430, 0x030000, revision=0xA1, parent="00:01.0", pcie_type=PCIE_ENDPOINT,
         multifunction=True, group=2, boot_vga=True, driver="nouveau"),
    Spec("01:00.1", 0x10DE, 0x0FBA, 0x040300, revision=0xA1, parent="00:01.0", pcie_type=PCIE_ENDPOINT,
         multifunction=True, group=2, driver="snd_hda_intel"),
    Spec("00:02.0", 0x10DE, 0xFFF1, 0x065500, group=3),      # known vendor, unknown device
    Spec("00:03.0", 0xFFF7, 0x0001, 0xFE0100, group=4),      # unknown vendor, unknown class
    Spec("00:1f.0", 0x8086, 0x2918, 0x060100, revision=0x02, multifunction=True, group=5),
    Spec("00:1f.2", 0x8086, 0x2922, 0x010601, revision=0x02, multifunction=True, group=5,
         driver="ahci"),
    Spec("0001:00:00.0", 0x1B36, 0x0008, 0x060000, group=6),
    Spec("0001:00:01.0", 0x15B7, 0x5006, 0x010802, pcie_type=PCIE_ENDPOINT, group=7, driver="nvme"),
]
