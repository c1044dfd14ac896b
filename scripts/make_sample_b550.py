"""Rebuild the bundled sample of the article's board, an Asus TUF Gaming B550-Plus (Ryzen 3000).

    python scripts/make_sample_b550.py   # rewrites src/vfiokit/samples/asus-tuf-b550-plus.json

The article shows groups 0, 1 and 14-16 before the ACS override and 14-30 after it. Everything
else is completed from the B550/Matisse topology as other Matisse B550 boards publish it
(tests/fixtures/listings/07: Gigabyte B550 Aorus Pro with a Ryzen 9 3900X), and the description says
which parts are inferred. Config spaces carry the PCIe capability and ACS each function has on
that platform, so the group predictor sees what the kernel saw.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vfiokit.model import PCIE_DOWNSTREAM_PORT, PCIE_ENDPOINT, PCIE_ROOT_PORT, PCIE_UPSTREAM_PORT
from vfiokit.sources.snapshot import dumps
from vfiokit.sources.synthetic import Spec, capture_of

OUT = Path(__file__).resolve().parents[1] / "src/vfiokit/samples/asus-tuf-b550-plus.json"

AMD, NVIDIA, SANDISK, REALTEK, MARVELL, ASUS = 0x1022, 0x10DE, 0x15B7, 0x10EC, 0x1B4B, 0x1043
ROOT_PORT_ACS = (0x005F, 0x001D)  # Matisse GPP bridges: SV TB RR CR UF DT capable; SV RR CR UF on
ENDPOINT_ACS = (0x0000, 0x0000)  # Matisse internal functions: an ACS capability with no controls


def _gpp(addr: str, dev: int, bus: int, sub: int, group: int) -> Spec:
    return Spec(addr, AMD, dev, 0x060400, pcie_type=PCIE_ROOT_PORT, acs=ROOT_PORT_ACS,
                multifunction=True, secondary_bus=bus, subordinate_bus=sub, group=group,
                driver="pcieport", reset_method="pm")


def _dummy(addr: str, group: int) -> Spec:
    return Spec(addr, AMD, 0x1482, 0x060000, multifunction=True, group=group)


def specs() -> list[Spec]:
    s = [
        # Bus 0: the CPU's root complex. The AMD IOMMU groups neither the root complex nor itself.
        Spec("00:00.0", AMD, 0x1480, 0x060000, subsystem=(ASUS, 0x87C0)),
        Spec("00:00.2", AMD, 0x1481, 0x080600, subsystem=(ASUS, 0x87C0)),
        _dummy("00:01.0", 0),
        _gpp("00:01.1", 0x1483, 0x01, 0x01, 1),   # M.2_1 (CPU lanes)
        _gpp("00:01.2", 0x1483, 0x02, 0x0A, 2),   # the B550 chipset uplink
        _dummy("00:02.0", 3),
        _dummy("00:03.0", 4),
        _gpp("00:03.1", 0x1483, 0x0B, 0x0B, 5),   # PCIEX16_1 (CPU lanes)
        _dummy("00:04.0", 6),
        _dummy("00:05.0", 7),
        _dummy("00:07.0", 8),
        _gpp("00:07.1", 0x1484, 0x0C, 0x0C, 9),
        _dummy("00:08.0", 10),
        _gpp("00:08.1", 0x1484, 0x0D, 0x0D, 11),
        # The FCH's SMBus and LPC functions are conventional PCI: one group, never overridden.
        Spec("00:14.0", AMD, 0x790B, 0x0C0500, revision=0x61, multifunction=True, group=12,
             subsystem=(ASUS, 0x87C0), driver="piix4_smbus"),
        Spec("00:14.3", AMD, 0x790E, 0x060100, revision=0x51, multifunction=True, group=12,
             subsystem=(ASUS, 0x87C0)),
        *[Spec(f"00:18.{f}", AMD, 0x1440 + f, 0x060000, multifunction=True, group=13,
               driver="k10temp" if f == 3 else None) for f in range(8)],
        # Bus 1: M.2_1, the system disk.
        Spec("01:00.0", SANDISK, 0x5006, 0x010802, parent="00:01.1", pcie_type=PCIE_ENDPOINT,
             group=14, subsystem=(SANDISK, 0x5006), driver="nvme", reset_method="flr bus"),
        # Bus 2: the B550 chipset (Promontory): USB, SATA, and the upstream port of its switch,
        # three functions of one slot without ACS, so one group with all that hangs below.
        Spec("02:00.0", AMD, 0x43EE, 0x0C0330, parent="00:01.2", pcie_type=PCIE_ENDPOINT,
             multifunction=True, group=15, subsystem=(ASUS, 0x1142), driver="xhci_hcd",
             reset_method="bus"),
        Spec("02:00.1", AMD, 0x43EB, 0x010601, parent="00:01.2", pcie_type=PCIE_ENDPOINT,
             multifunction=True, group=15, subsystem=(ASUS, 0x1062), driver="ahci",
             reset_method="bus"),
        Spec("02:00.2", AMD, 0x43E9, 0x060400, parent="00:01.2", pcie_type=PCIE_UPSTREAM_PORT,
             multifunction=True, group=15, secondary_bus=0x03, subordinate_bus=0x0A,
             subsystem=(ASUS, 0x0201), driver="pcieport", reset_method="bus"),
    ]
    # The switch's downstream ports (no ACS): slots and on-board devices behind the chipset.
    for slot, bus in ((0, 4), (1, 5), (2, 6), (3, 7), (4, 8), (8, 9), (9, 0x0A)):
        s.append(Spec(f"03:{slot:02x}.0", AMD, 0x43EA, 0x060400, parent="02:00.2",
                      pcie_type=PCIE_DOWNSTREAM_PORT, secondary_bus=bus, subordinate_bus=bus,
                      group=15, subsystem=(ASUS, 0x3308), driver="pcieport", reset_method="pm"))
    s += [
        # PCIEX16_2 (chipset, x4): the Quadro M2000 the host's console runs on.
        Spec("04:00.0", NVIDIA, 0x1430, 0x030000, revision=0xA1, parent="03:00.0",
             pcie_type=PCIE_ENDPOINT, multifunction=True, group=15, subsystem=(NVIDIA, 0x1190),
             driver="nouveau", boot_vga=True, reset_method="bus"),
        Spec("04:00.1", NVIDIA, 0x0FBA, 0x040300, revision=0xA1, parent="03:00.0",
             pcie_type=PCIE_ENDPOINT, multifunction=True, group=15, subsystem=(NVIDIA, 0x1190),
             driver="snd_hda_intel", reset_method="bus"),
        # PCIEX1_1: the additional Realtek gigabit card.
        Spec("06:00.0", REALTEK, 0x8168, 0x020000, revision=0x06, parent="03:02.0",
             pcie_type=PCIE_ENDPOINT, group=15, subsystem=(REALTEK, 0x0123), driver="r8169",
             reset_method="bus"),
        # PCIEX1_2: the Marvell 88SE9215 SATA card meant for the NAS VM.
        Spec("07:00.0", MARVELL, 0x9215, 0x010601, revision=0x11, parent="03:03.0",
             pcie_type=PCIE_ENDPOINT, group=15, subsystem=(MARVELL, 0x9215), driver="ahci",
             reset_method="bus"),
        # M.2_2 (chipset lanes).
        Spec("08:00.0", SANDISK, 0x5006, 0x010802, parent="03:04.0", pcie_type=PCIE_ENDPOINT,
             group=15, subsystem=(SANDISK, 0x5006), driver="nvme", reset_method="flr bus"),
        # On-board Realtek RTL8125B 2.5 GbE: the host's network (vmbr0).
        Spec("0a:00.0", REALTEK, 0x8125, 0x020000, revision=0x04, parent="03:09.0",
             pcie_type=PCIE_ENDPOINT, group=15, subsystem=(ASUS, 0x87D7), driver="r8169",
             reset_method="bus"),
        # PCIEX16_1 with an NVMe adapter card.
        Spec("0b:00.0", SANDISK, 0x5006, 0x010802, parent="00:03.1", pcie_type=PCIE_ENDPOINT,
             group=16, subsystem=(SANDISK, 0x5006), driver="nvme", reset_method="flr bus"),
        # The CPU's internal functions behind the internal GPP bridges: multifunction, but each
        # has an ACS capability, so each is its own group.
        Spec("0c:00.0", AMD, 0x148A, 0x130000, parent="00:07.1", pcie_type=PCIE_ENDPOINT,
             acs=ENDPOINT_ACS, group=17, subsystem=(AMD, 0x148A)),
        Spec("0d:00.0", AMD, 0x1485, 0x130000, parent="00:08.1", pcie_type=PCIE_ENDPOINT,
             multifunction=True, acs=ENDPOINT_ACS, group=18, subsystem=(AMD, 0x1485)),
        Spec("0d:00.1", AMD, 0x1486, 0x108000, parent="00:08.1", pcie_type=PCIE_ENDPOINT,
             multifunction=True, acs=ENDPOINT_ACS, group=19, subsystem=(AMD, 0x1486), driver="ccp"),
        Spec("0d:00.3", AMD, 0x149C, 0x0C0330, parent="00:08.1", pcie_type=PCIE_ENDPOINT,
             multifunction=True, acs=ENDPOINT_ACS, group=20, subsystem=(ASUS, 0x87C0),
             driver="xhci_hcd", reset_method="flr"),
        Spec("0d:00.4", AMD, 0x1487, 0x040300, parent="00:08.1", pcie_type=PCIE_ENDPOINT,
             multifunction=True, acs=ENDPOINT_ACS, group=21, subsystem=(ASUS, 0x87C4),
             driver="snd_hda_intel", reset_method="flr"),
    ]
    return s


DESCRIPTION = """\
The Asus TUF Gaming B550-Plus of the article (Ryzen 3000 'Matisse' on the B550 chipset), as the \
kernel groups it without an ACS override. Seen in the article (its lspci -s lines, names without \
ids): groups 0, 1 and 14-16, every device in them with its address, name and revision, and the \
override result (groups 14-30). Ids: where lspci printed 'Device XXXX' (Sandisk 5006, AMD 43ee \
43eb 43e9 43ea, Marvell 9215, Realtek 8125) the device id is the article's; vendor ids, and the \
device ids of named devices (Starship/Matisse bridges 1022:1482 1022:1483, Quadro M2000 \
10de:1430 and its audio 10de:0fba, RTL8111 10ec:8168), are looked up by name in pci.ids. \
Kernel: not in the article; 5.11.22-4-pve is a Proxmox VE 6.4/7.0 kernel, the era of its \
'pve-efiboot-tool refresh' (renamed proxmox-boot-tool in 6.4). Command line: intel_iommu=on is \
the article's own (its GRUB_CMDLINE_LINUX_DEFAULT before adding the override; on an AMD CPU it \
does nothing, AMD-Vi is on by default), BOOT_IMAGE and root= are a stock Proxmox LVM install's. \
Inferred: the rest of bus 0 (dummy host bridges, GPP bridges 00:01.2, 00:03.1, 00:07.1, 00:08.1, \
FCH SMBus/LPC, data fabric) and the CPU's internal functions on buses 0c-0d, copied from a \
published Matisse B550 board (Gigabyte B550 Aorus Pro); which downstream port each card sits \
behind (buses 05 and 09 empty); PCIe capabilities and ACS (GPP bridges with ACS, chipset ports \
and functions without, CPU internal functions with an empty ACS capability); drivers, subsystem \
ids and reset methods; the host's use: Proxmox on the M.2_1 NVMe (01:00.0), console on the \
Quadro (04:00.0, boot VGA), vmbr0 with the default route on the on-board RTL8125 (0a:00.0)."""

HOST = {
    "kernel_release": "5.11.22-4-pve",
    "cmdline": "BOOT_IMAGE=/boot/vmlinuz-5.11.22-4-pve root=/dev/mapper/pve-root ro quiet intel_iommu=on",
    "cpu_vendor": "AuthenticAMD",
    "cpu_flags": ["svm"],
    "iommu_units": ["ivhd0"],
    "hostname": "pve",
    "board": "ASUSTeK COMPUTER INC. TUF GAMING B550-PLUS",
    "dmesg": None,
}


# What the owner's Proxmox uses (layout: vfiokit.sources.host_usage), as a stock install on the
# M.2_1 NVMe would give it: LVM root and swap, the ESP, vmbr0 on the on-board NIC carrying the
# default route, the console on the Quadro, a USB keyboard on the CPU's rear-panel controller.
_ROOT_CHAIN = ["nvme0n1p3", "nvme0n1", "nvme0", "0000:01:00.0"]
HOST_USAGE = {
    "version": 1,
    "storage": [
        {"use": "/", "role": "root", "source": "/dev/mapper/pve-root", "fstype": "ext4",
         "chain": ["dm-1", *_ROOT_CHAIN], "pci": "0000:01:00.0"},
        {"use": "/boot/efi", "role": "efi", "source": "/dev/nvme0n1p2", "fstype": "vfat",
         "chain": ["nvme0n1p2", "nvme0n1", "nvme0", "0000:01:00.0"], "pci": "0000:01:00.0"},
        {"use": "/dev/dm-0", "role": "swap", "source": "/dev/mapper/pve-swap", "fstype": "swap",
         "chain": ["dm-0", *_ROOT_CHAIN], "pci": "0000:01:00.0"},
    ],
    "network": [
        {"interface": "enp10s0", "operstate": "up", "chain": ["enp10s0", "0000:0a:00.0"], "pci": "0000:0a:00.0",
         "default_route": [{"family": "ipv4", "via": ["vmbr0", "enp10s0"]}]},
        {"interface": "enp6s0", "operstate": "up", "chain": ["enp6s0", "0000:06:00.0"], "pci": "0000:06:00.0",
         "default_route": []},
    ],
    "console": [{"what": "fb0", "name": "nouveaudrmfb", "chain": ["fb0", "0000:04:00.0"], "pci": "0000:04:00.0"}],
    "input": [{"what": "keyboard", "name": "USB Keyboard", "chain": ["input3", "1-2", "usb1", "0000:0d:00.3"],
               "pci": "0000:0d:00.3"}],
    "proxmox": {"node": "pve", "vms": [], "mappings": []},
    "notes": [],
}


def build() -> dict:
    raw = capture_of(specs(), host=HOST)
    raw["host_usage"] = HOST_USAGE
    raw["captured"].update(by="vfiokit sample (reconstructed)", at="2021-09-01T00:00:00+00:00")
    raw["sample"] = {"name": "asus-tuf-b550-plus",
                     "title": "Asus TUF Gaming B550-Plus + Ryzen 3000, the article's board",
                     "description": DESCRIPTION}
    return raw


def main() -> int:
    text = dumps(build())
    if "--check" in sys.argv:
        return 0 if OUT.read_text() == text else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
