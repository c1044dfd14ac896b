"""The lab's machines, as data: QEMU `-device` lines, kernel arguments, guest set-up steps.

Every machine is booted twice, once behind an emulated Intel IOMMU (name as written) and once
behind an emulated AMD IOMMU (name + "-amd"), because the two drivers form groups through the same
`pci_device_group` but see different extra functions (the AMD IOMMU is itself a PCI function).

A set-up step is a busybox `sh` line run by the guest init before the snapshot. A machine with
`disks=N` gets N fresh raw images as drives `d0`..`dN-1` (for `nvme,drive=d0,...`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The Linux modules that bind each QEMU device model (the IOMMU drivers, PCIe port driver and
#: 8250 serial are built into Debian's kernel; these are not).
DRIVERS = {
    "e1000e": ("e1000e",),
    "e1000": ("e1000",),
    "virtio-net-pci": ("virtio_pci", "virtio_net"),
    "nvme": ("nvme",),
    "ahci": ("ahci",),
    "qemu-xhci": ("xhci_pci",),
    "VGA": ("bochs",),
    "ich9-intel-hda": ("snd_hda_intel",),
}

#: Modules only some kernels need, by kernel name (lab/fetch.py KERNELS): ext4 of 6.1 needs the
#: crc32c crypto module at mount (ext4_fill_super) but names it only by a softdep alias; newer
#: kernels' ext4 calls the crc32c library built into the kernel.
ONLY_IN = {"crc32c_generic": ("6.1",)}

IOMMUS = {
    # (QEMU device, kernel argument); intremap needs the machine's split irqchip (boot.py).
    "intel": ("intel-iommu,intremap=on,caching-mode=on", "intel_iommu=on"),
    # The AMD driver is on by default (6.1 answers "AMD-Vi: Unknown option - 'on'" to
    # amd_iommu=on). QEMU 7.2's amd-iommu under TCG loses NVMe's first DMA (admin command timeout
    # after 60 s); iommu=pt (identity default domain, common on Proxmox hosts) avoids it and leaves
    # the groups alone: pci_device_group does not look at the domain type.
    "amd": ("amd-iommu,intremap=on", "iommu=pt"),
}

#: The same IOMMU present but switched off on the command line: the host a user snapshots before
#: turning the IOMMU on, from which the group model must predict the groups to come.
IOMMU_OFF = {"intel": "intel_iommu=off", "amd": "amd_iommu=off"}


@dataclass(frozen=True)
class Machine:
    name: str
    teaches: str
    devices: tuple[str, ...]
    kernel_args: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()  # extra modules the set-up needs (bridge, ext4, ...)
    disks: int = 0  # fresh raw images, QEMU drives d0, d1, ...


@dataclass(frozen=True)
class Topology:
    name: str
    iommu: str  # "intel" or "amd"
    machine: Machine = field(repr=False)
    iommu_off: bool = False  # booted with the IOMMU switched off (IOMMU_OFF)

    @property
    def qemu_devices(self) -> tuple[str, ...]:
        return (IOMMUS[self.iommu][0], *self.machine.devices)

    @property
    def kernel_args(self) -> tuple[str, ...]:
        first = IOMMU_OFF[self.iommu] if self.iommu_off else IOMMUS[self.iommu][1]
        return (first, *self.machine.kernel_args)

    @property
    def iommu_on_twin(self) -> str:
        """The name of the same machine booted with its IOMMU on."""
        return self.name.removesuffix("-iommu-off")

    @property
    def modules(self) -> tuple[str, ...]:
        """The modules to load, in a stable order: drivers of the devices present, then set-up's."""
        out: list[str] = []
        for line in self.machine.devices:
            model = line.split(",", 1)[0]
            out.extend(m for m in DRIVERS.get(model, ()) if m not in out)
        out.extend(m for m in self.machine.modules if m not in out)
        return tuple(out)

    def modules_for(self, kernel: str) -> tuple[str, ...]:
        """`modules`, less those `kernel` does without (ONLY_IN)."""
        return tuple(m for m in self.modules if kernel in ONLY_IN.get(m, (kernel,)))


def _rp(i: int, addr: str, kind: str = "pcie-root-port", extra: str = "") -> str:
    return f"{kind},id=rp{i},bus=pcie.0,chassis={i},addr={addr}{extra}"


MACHINES = (
    Machine(
        "t1-acs-root-ports",
        "QEMU's pcie-root-port has ACS: each port and each endpoint below it stands alone",
        (_rp(1, "0x2.0x0", extra=",multifunction=on"), _rp(2, "0x2.0x1"),
         "e1000e,bus=rp1,addr=0x0", "virtio-net-pci,bus=rp2,addr=0x0"),
    ),
    Machine(
        "t2-nonacs-root-ports",
        "ioh3420 ports lack ACS: two ports of one multifunction slot share a group with what is below",
        (_rp(1, "0x2.0x0", "ioh3420", ",multifunction=on"), _rp(2, "0x2.0x1", "ioh3420"),
         "e1000e,bus=rp1,addr=0x0", "virtio-net-pci,bus=rp2,addr=0x0"),
    ),
    Machine(
        "t3-switch",
        "x3130 switch ports lack ACS, yet below an ACS root port the upstream port stands alone "
        "and each downstream port forms a group with what is below it",
        (_rp(1, "0x2.0x0"), "x3130-upstream,id=up1,bus=rp1",
         "xio3130-downstream,id=dn1,bus=up1,chassis=11,slot=1,addr=0x0",
         "xio3130-downstream,id=dn2,bus=up1,chassis=12,slot=2,addr=0x1",
         "e1000e,bus=dn1,addr=0x0", "e1000e,bus=dn2,addr=0x0"),
    ),
    Machine(
        "t4-pcie-pci-bridge",
        "conventional PCI behind a PCIe-to-PCI bridge aliases to the bridge: one group, bridges included",
        (_rp(1, "0x2.0x0"), "pcie-pci-bridge,id=br1,bus=rp1,addr=0x0",
         "e1000,bus=br1,addr=0x1", "e1000,bus=br1,addr=0x2",
         "pci-bridge,id=pb2,bus=br1,addr=0x3,chassis_nr=3", "e1000,bus=pb2,addr=0x1"),
    ),
    Machine(
        "t5-multifunction",
        "functions of one slot without ACS share a group (virtio-net on the root bus, e1000e behind a "
        "root port), except Intel's root-complex integrated e1000e on the root bus (quirk: isolated)",
        ("e1000e,bus=pcie.0,addr=0x3.0x0,multifunction=on", "e1000e,bus=pcie.0,addr=0x3.0x1",
         "virtio-net-pci,bus=pcie.0,addr=0x4.0x0,multifunction=on", "virtio-net-pci,bus=pcie.0,addr=0x4.0x1",
         _rp(1, "0x5.0x0"),
         "e1000e,bus=rp1,addr=0x0.0x0,multifunction=on", "e1000e,bus=rp1,addr=0x0.0x1"),
    ),
    Machine(
        "switch-below-nonacs-port",
        "a non-ACS root port swallows the whole switch below it, root port included",
        (_rp(1, "0x2.0x0", "ioh3420"), "x3130-upstream,id=up1,bus=rp1",
         "xio3130-downstream,id=dn1,bus=up1,chassis=11,slot=1,addr=0x0",
         "xio3130-downstream,id=dn2,bus=up1,chassis=12,slot=2,addr=0x1",
         "e1000e,bus=dn1,addr=0x0", "nvme,bus=dn2,addr=0x0,drive=d0,serial=lab0",
        ),
        disks=1,
    ),
    Machine(
        "root-ports-disable-acs",
        "disable-acs=on removes the port's ACS: alone in its slot the port keeps its own group "
        "(with its endpoint); sharing a multifunction slot, the ports merge",
        (_rp(1, "0x2.0x0", extra=",disable-acs=on"), _rp(2, "0x3.0x0", extra=",disable-acs=on"),
         _rp(3, "0x4.0x0", extra=",disable-acs=on,multifunction=on"),
         _rp(4, "0x4.0x1", extra=",disable-acs=on"),
         "e1000e,bus=rp1,addr=0x0", "e1000e,bus=rp2,addr=0x0",
         "e1000e,bus=rp3,addr=0x0", "e1000e,bus=rp4,addr=0x0"),
    ),
    Machine(
        "disable-acs-redir",
        "pci=disable_acs_redir= clears Request/Completion Redirect on ports that have ACS: their "
        "endpoints join their groups; the slot's other function, which kept ACS, stays alone",
        (_rp(1, "0x2.0x0", extra=",multifunction=on"), _rp(2, "0x2.0x1"), _rp(3, "0x3.0x0"),
         "e1000e,bus=rp1,addr=0x0", "e1000e,bus=rp2,addr=0x0", "e1000e,bus=rp3,addr=0x0"),
        kernel_args=("pci=disable_acs_redir=0000:00:02.0;0000:00:03.0",),
    ),
    Machine(
        "pxb-second-root-bus",
        "pxb-pcie adds a second root bus: its host bridge sits on bus 0, its ports start a new hierarchy",
        ("pxb-pcie,id=pxb1,bus_nr=128,bus=pcie.0,addr=0x6",
         "pcie-root-port,id=rp1,bus=pxb1,chassis=1,addr=0x0.0x0,multifunction=on",
         "pcie-root-port,id=rp2,bus=pxb1,chassis=2,addr=0x0.0x1",
         "ioh3420,id=rp3,bus=pxb1,chassis=3,addr=0x1.0x0",
         "e1000e,bus=rp1,addr=0x0", "e1000e,bus=rp2,addr=0x0", "e1000e,bus=rp3,addr=0x0",
         _rp(4, "0x2.0x0"), "e1000e,bus=rp4,addr=0x0"),
    ),
    Machine(
        "gpu-like-card",
        "a GPU with its HDMI audio function (conventional PCI, multifunction, no ACS) is one group; "
        "the card is the boot VGA",
        (_rp(1, "0x2.0x0"),
         "VGA,bus=rp1,addr=0x0.0x0,multifunction=on", "ich9-intel-hda,bus=rp1,addr=0x0.0x1",
         _rp(2, "0x3.0x0"), "e1000e,bus=rp2,addr=0x0"),
    ),
    Machine(
        "storage-mix",
        "NVMe alone behind an ACS port; AHCI + xHCI as functions of one root-bus slot share a group; "
        "two NICs behind a PCIe-to-PCI bridge below a non-ACS port share a group with both bridges",
        (_rp(1, "0x2.0x0"), "nvme,bus=rp1,addr=0x0,drive=d0,serial=lab0",
         "ahci,bus=pcie.0,addr=0x3.0x0,multifunction=on", "qemu-xhci,bus=pcie.0,addr=0x3.0x1",
         _rp(2, "0x4.0x0", "ioh3420"), "pcie-pci-bridge,id=br2,bus=rp2,addr=0x0",
         "e1000,bus=br2,addr=0x1", "e1000,bus=br2,addr=0x2"),
        disks=1,
    ),
    Machine(
        "hostuse",
        "one group holds what the host lives on (mounted NVMe, the NIC under the default-route bridge, "
        "the boot VGA) and an AHCI controller one would like to pass through",
        (_rp(1, "0x2.0x0", "ioh3420"), "x3130-upstream,id=up1,bus=rp1",
         "xio3130-downstream,id=dn1,bus=up1,chassis=11,slot=1,addr=0x0",
         "xio3130-downstream,id=dn2,bus=up1,chassis=12,slot=2,addr=0x1",
         "xio3130-downstream,id=dn3,bus=up1,chassis=13,slot=3,addr=0x2",
         "xio3130-downstream,id=dn4,bus=up1,chassis=14,slot=4,addr=0x3",
         "nvme,bus=dn1,addr=0x0,drive=d0,serial=lab0", "e1000e,bus=dn2,addr=0x0",
         "VGA,bus=dn3,addr=0x0", "ahci,bus=dn4,addr=0x0"),
        setup=(
            # The disk the host lives on: a filesystem on the NVMe, mounted and in fstab.
            "wait_for /dev/nvme0n1 && mke2fs -q /dev/nvme0n1",
            "mkdir -p /mnt/data && mount -t ext2 /dev/nvme0n1 /mnt/data",
            "echo '/dev/nvme0n1 /mnt/data ext2 defaults 0 2' >> /etc/fstab",
            # The network the host lives on: the e1000e enslaved to vmbr0, which carries the
            # default route (Proxmox's usual layout; nothing leaves the guest).
            "brctl addbr vmbr0 && brctl addif vmbr0 eth0",
            "ip link set eth0 up && ip link set vmbr0 up",
            # A host's uplink is up: wait (5 s at most) for the e1000e to report its link.
            "i=0; while [ \"$(cat /sys/class/net/eth0/operstate)\" != up ] && [ $i -lt 50 ]; do "
            "sleep 0.1; i=$((i + 1)); done",
            "ip addr add 192.0.2.10/24 dev vmbr0 && ip route add default via 192.0.2.1 dev vmbr0",
            "printf 'auto lo\\niface lo inet loopback\\n\\niface eth0 inet manual\\n\\nauto vmbr0\\n"
            "iface vmbr0 inet static\\n\\taddress 192.0.2.10/24\\n\\tgateway 192.0.2.1\\n"
            "\\tbridge-ports eth0\\n\\tbridge-stp off\\n\\tbridge-fd 0\\n' > /etc/network/interfaces",
        ),
        # ext4 mounts ext2; 6.1's needs crc32c_generic too (ONLY_IN).
        modules=("bridge", "ext4", "crc32c_generic"),
        disks=1,
    ),
)

#: Machines also booted with the IOMMU off (NAME-iommu-off, NAME-amd-iommu-off): the snapshot a
#: user takes before enabling it, whose predicted groups the twin with the IOMMU on shows.
#: disable-acs-redir: the kernel applies pci=disable_acs_redir= again after enabling ACS
#: (pci_enable_acs); under AMD, the IOMMU's own function must take no group number.
OFF_TOO = ("disable-acs-redir",)


def _named(m: Machine, iommu: str, off: bool) -> Topology:
    name = m.name + ("" if iommu == "intel" else "-amd") + ("-iommu-off" if off else "")
    return Topology(name, iommu, m, off)


TOPOLOGIES: dict[str, Topology] = {
    t.name: t for t in (
        *(_named(m, iommu, False) for iommu in IOMMUS for m in MACHINES),
        *(_named(m, iommu, True) for iommu in IOMMUS for m in MACHINES if m.name in OFF_TOO),
    )
}
