"""Why a host shows no IOMMU groups: firmware, kernel command line, or a VM. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vfiokit.errors import Refused
from vfiokit.model import HostInfo


@dataclass(frozen=True)
class IommuDiagnosis:
    #: "vm", "cmdline-off", "intel-needs-flag", "firmware-virt-off", "driver-no-groups",
    #: "firmware-iommu-off"
    cause: str
    explanation: str


#: Kernel parameters that turn the IOMMU off (Documentation/admin-guide/kernel-parameters.txt).
IOMMU_OFF = ("intel_iommu=off", "amd_iommu=off", "iommu=off")


def kernel_version(release: str | None) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", release or "")
    return (int(m[1]), int(m[2])) if m else None


def diagnose(host: HostInfo) -> IommuDiagnosis:
    """Best guess of why there are no IOMMU groups, from /sys/class/iommu, CPU flags, cmdline."""
    flags = set(host.cpu_flags or ())
    params = (host.cmdline or "").split()
    off = [p for p in params if p in IOMMU_OFF]
    # The command line first: a VM with a virtual IOMMU booted with it switched off is that case
    # (the QEMU lab's *-iommu-off captures), not a VM without one.
    if off:
        return IommuDiagnosis("cmdline-off", f"the kernel command line turns it off ({' '.join(off)}); "
                              "remove it with 'vfiokit boot remove " + " ".join(off) + "'")
    if "hypervisor" in flags:
        return IommuDiagnosis("vm", "this looks like a virtual machine (CPU flag 'hypervisor') "
                              "without a virtual IOMMU; run vfiokit on the Proxmox host itself")
    version = kernel_version(host.kernel_release)
    if (host.cpu_vendor == "GenuineIntel" and version is not None and version < (6, 8)
            and "intel_iommu=on" not in params and not host.iommu_units):
        return IommuDiagnosis("intel-needs-flag", f"Intel CPU with kernel {host.kernel_release}: kernels "
                              "before 6.8 need intel_iommu=on ('vfiokit boot iommu' adds it)")
    if host.iommu_units:
        # Units registered (iommu_device_sysfs_add) yet no group: the IOMMU driver did not take the
        # PCI bus (e.g. it failed during init); the firmware switch is not the cause.
        return IommuDiagnosis("driver-no-groups", f"/sys/class/iommu lists {', '.join(host.iommu_units)}, "
                              "yet the kernel formed no IOMMU group: its IOMMU driver did not take the "
                              "PCI devices; the kernel log says why (dmesg | grep -i -e DMAR -e IOMMU "
                              "-e AMD-Vi)")
    if flags and not flags & {"vmx", "svm"}:
        return IommuDiagnosis("firmware-virt-off", "the CPU shows no vmx/svm flag: virtualization "
                              "(and with it VT-d / AMD-Vi) looks disabled in the firmware setup")
    return IommuDiagnosis("firmware-iommu-off", "no IOMMU unit in /sys/class/iommu: enable VT-d "
                          "(Intel) or IOMMU / AMD-Vi (AMD) in the firmware setup")


def iommu_params(host: HostInfo, pt: bool) -> tuple[list[str], str]:
    """The kernel parameters that turn the IOMMU on for this host, and why (Proxmox
    `qm-pci-passthrough.adoc`: on by default on AMD, and on Intel since kernel 6.8; nothing is
    needed where `/sys/class/iommu` already lists units). `pt` adds `iommu=pt` on request."""
    extra = ["iommu=pt"] if pt else []
    if host.iommu_units:
        return extra, f"the IOMMU is already on ({', '.join(host.iommu_units)} in /sys/class/iommu)"
    version = kernel_version(host.kernel_release)
    off = [p for p in (host.cmdline or "").split() if p in IOMMU_OFF]
    if host.cpu_vendor == "GenuineIntel" and version is not None and version < (6, 8):
        return ["intel_iommu=on", *extra], (f"Intel CPU and kernel {host.kernel_release}: before 6.8 the "
                                            "Intel IOMMU is off unless intel_iommu=on is given")
    if off and host.cpu_vendor in ("GenuineIntel", "AuthenticAMD"):
        return extra, (f"the running kernel got {' '.join(off)}, which turns the IOMMU off: it must go "
                       "from the command line, then a reboot")
    if host.cpu_vendor == "GenuineIntel" and version is not None:
        return extra, (f"kernel {host.kernel_release} turns the Intel IOMMU on by default; no IOMMU unit is "
                       "listed, so VT-d is probably disabled in the firmware setup")
    if host.cpu_vendor == "AuthenticAMD":
        return extra, ("the AMD IOMMU is on by default; no IOMMU unit is listed, so IOMMU / AMD-Vi is "
                       "probably disabled in the firmware setup")
    raise Refused("cannot tell which IOMMU parameter this host needs (CPU vendor or kernel version "
                  "unknown: /proc/cpuinfo, /proc/sys/kernel/osrelease)",
                  hint="add it yourself: 'vfiokit boot add intel_iommu=on'")
