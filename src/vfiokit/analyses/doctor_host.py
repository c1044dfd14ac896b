"""`vfiokit doctor`'s checks of the host: firmware, kernel, modules (see analyses/doctor.py). Pure."""

from __future__ import annotations

from typing import Any

from vfiokit.analyses.acs_override import PARAM as ACS_PARAM
from vfiokit.analyses.acs_override import kernel_support
from vfiokit.analyses.doctor_input import (
    FAIL,
    OK,
    SKIP,
    VFIO_MODULES,
    WARN,
    DoctorInput,
    Finding,
    finding,
    log_line,
    log_source,
)
from vfiokit.analyses.iommu_state import IOMMU_OFF, diagnose, kernel_version
from vfiokit.formats import cmdline as cl


def hypervisor(d: DoctorInput) -> list[Finding]:
    """Said first: inside a VM every other verdict is about the VM (CPU flag `hypervisor`, set by
    every hypervisor in CPUID leaf 1 ECX bit 31)."""
    flags = d.top.host.cpu_flags
    if flags is None:
        return [finding("firmware.hypervisor", SKIP, "unread", "/proc/cpuinfo not readable")]
    if "hypervisor" in flags:
        return [finding("firmware.hypervisor", WARN, "hypervisor.vm", "/proc/cpuinfo flags: hypervisor",
                        "run vfiokit doctor on the Proxmox host itself")]
    return [finding("firmware.hypervisor", OK, "hypervisor.bare", "/proc/cpuinfo flags: no hypervisor")]


def cpu_virt(d: DoctorInput) -> list[Finding]:
    """vmx (Intel VT-x) / svm (AMD-V): KVM's own requirement (arch/x86/kvm vmx/svm hardware_setup)."""
    flags = d.top.host.cpu_flags
    if flags is None:
        return [finding("firmware.virt", SKIP, "unread", "/proc/cpuinfo not readable")]
    have = [f for f in ("vmx", "svm") if f in flags]
    if have:
        return [finding("firmware.virt", OK, "virt.on", f"/proc/cpuinfo flags: {have[0]}", flag=have[0])]
    return [finding("firmware.virt", FAIL, "virt.off", "/proc/cpuinfo flags: neither vmx nor svm",
                    "enable Intel VT-x / AMD SVM in the firmware setup")]


def acpi_iommu(d: DoctorInput) -> list[Finding]:
    """The firmware describes its IOMMU in ACPI: DMAR (Intel VT-d, drivers/iommu/intel/dmar.c
    dmar_table_detect) or IVRS (AMD-Vi, drivers/iommu/amd/init.c); none means the firmware
    switch is off."""
    tables = d.fact("acpi_tables")
    if tables is None:
        return [finding("firmware.acpi_iommu", SKIP, "unread", "/sys/firmware/acpi/tables not readable")]
    found = [t for t in ("DMAR", "IVRS") if t in tables]
    if found:
        return [finding("firmware.acpi_iommu", OK, "acpi.found", f"/sys/firmware/acpi/tables/{found[0]}",
                        table=found[0])]
    return [finding("firmware.acpi_iommu", FAIL, "acpi.missing",
                    "/sys/firmware/acpi/tables has neither DMAR nor IVRS",
                    "enable VT-d (Intel) or IOMMU / AMD-Vi (AMD) in the firmware setup")]


# -- kernel ------------------------------------------------------------------------------------

def iommu_off_param(d: DoctorInput) -> list[Finding]:
    """intel_iommu=off / amd_iommu=off / iommu=off (kernel-parameters.txt) win over the firmware."""
    line = d.top.host.cmdline
    if line is None:
        return [finding("kernel.iommu_off", SKIP, "unread", "/proc/cmdline not readable")]
    off = [t for t in cl.tokens(line) if t in IOMMU_OFF]
    if off:
        return [finding("kernel.iommu_off", FAIL, "off.given", f"/proc/cmdline: {' '.join(off)}",
                        f"vfiokit boot remove {' '.join(off)}", params=" ".join(off))]
    return [finding("kernel.iommu_off", OK, "off.none", "/proc/cmdline: no *iommu=off")]


def intel_flag(d: DoctorInput) -> list[Finding]:
    """Intel's IOMMU is off by default in kernels before 6.8 (pve-docs qm-pci-passthrough.adoc: the
    Proxmox VE 6.8 kernel turns it on, older ones need intel_iommu=on; drivers/iommu/intel
    CONFIG_INTEL_IOMMU_DEFAULT_ON)."""
    host = d.top.host
    version = kernel_version(host.kernel_release)
    if host.cpu_vendor != "GenuineIntel":
        return [finding("kernel.intel_iommu_on", OK, "intel.not_intel", f"CPU vendor {host.cpu_vendor or 'unknown'}",
                        vendor=host.cpu_vendor or "unknown")]
    if version is None or host.cmdline is None:
        return [finding("kernel.intel_iommu_on", SKIP, "unread", "kernel release or /proc/cmdline not readable")]
    # Units registered already: the kernel turned it on (a distro built with
    # CONFIG_INTEL_IOMMU_DEFAULT_ON), whatever the release.
    if version >= (6, 8) or cl.has(host.cmdline, "intel_iommu=on") or host.iommu_units:
        return [finding("kernel.intel_iommu_on", OK, "intel.fine",
                        f"kernel {host.kernel_release}, /proc/cmdline", release=host.kernel_release or "")]
    return [finding("kernel.intel_iommu_on", FAIL, "intel.needs_flag",
                    f"kernel {host.kernel_release}, /proc/cmdline has no intel_iommu=on", "vfiokit boot iommu",
                    release=host.kernel_release or "")]


def iommu_active(d: DoctorInput) -> list[Finding]:
    """Proxmox's test is /sys/class/iommu having an entry (pve-common SysFSTools check_iommu_support);
    vfio also needs groups (/sys/kernel/iommu_groups, vfio_group_find_or_alloc)."""
    host, top = d.top.host, d.top
    line = log_line(d, "DMAR: IOMMU enabled", "AMD-Vi: Found IOMMU", "AMD-Vi: AMD IOMMUv2", "iommu: Default domain")
    if host.iommu_units and top.groups:
        ev = f"/sys/class/iommu: {', '.join(host.iommu_units)}; {len(top.groups)} IOMMU groups"
        return [finding("kernel.iommu", OK, "iommu.on", ev + (f"; {log_source(d)}: {line}" if line else ""),
                        units=", ".join(host.iommu_units), groups=len(top.groups))]
    if host.iommu_units is None and top.groups is None:
        return [finding("kernel.iommu", SKIP, "unread", "/sys/class/iommu not readable")]
    why = diagnose(host)
    return [finding("kernel.iommu", FAIL, "iommu.off",
                    f"/sys/class/iommu: {', '.join(host.iommu_units or ()) or 'empty'}; no IOMMU group",
                    None, cause=why.explanation)]


_IR_LINES = ("DMAR-IR: Enabled IRQ remapping", "AMD-Vi: Interrupt remapping enabled")


def irq_remap(d: DoctorInput) -> list[Finding]:
    """Without interrupt remapping vfio_iommu_type1_attach_group refuses the group ("No interrupt
    remapping support. Use the module param allow_unsafe_interrupts", -EPERM), unless
    allow_unsafe_interrupts=1, which lets a guest's device forge MSIs to the host."""
    unsafe = d.fact("allow_unsafe_interrupts")
    if d.top.host.dmesg is None:
        return [finding("kernel.irq_remap", SKIP, "log.unread", "no kernel log readable (dmesg, journalctl -k, "
                        "/var/log/kern.log)")]
    line = log_line(d, *_IR_LINES)
    if line:
        return [finding("kernel.irq_remap", OK, "irq.on", f"{log_source(d)}: {line}")]
    # The boot's first line says the log reaches back to the boot (the ring buffer has not wrapped,
    # and the capture kept the remapping lines: older snapshots filtered without both).
    if log_line(d, "Linux version") is None:
        return [finding("kernel.irq_remap", SKIP, "log.partial",
                        f"{log_source(d)} does not reach back to the boot")]
    if unsafe in ("Y", "1"):
        return [finding("kernel.irq_remap", WARN, "irq.unsafe",
                        "no interrupt remapping line in the kernel log; "
                        "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts: Y")]
    # The kernel says why when it gives up (amd_iommu init: "[Firmware Bug]: No southbridge IOAPIC
    # found" then "Disabling interrupt remapping"; intel irq_remapping.c "Not enabling interrupt
    # remapping"): that line is the evidence.
    said = log_line(d, "Disabling interrupt remapping", "Not enabling interrupt remapping",
                "IRQ remapping was disabled")
    why = said or f"no {' / '.join(_IR_LINES)} line"
    return [finding("kernel.irq_remap", FAIL, "irq.off", f"{log_source(d)}: {why}",
                    "vfiokit boot add vfio_iommu_type1.allow_unsafe_interrupts=1")]


def iommu_pt(d: DoctorInput) -> list[Finding]:
    """iommu=pt keeps host devices out of DMA translation (identity domain): host I/O at full speed,
    no effect on passed devices (pve-docs qm-pci-passthrough.adoc). Only a warning."""
    line = d.top.host.cmdline
    if line is None:
        return [finding("kernel.iommu_pt", SKIP, "unread", "/proc/cmdline not readable")]
    passthrough = log_line(d, "Default domain type: Passthrough")
    if cl.has(line, "iommu=pt") or passthrough:
        return [finding("kernel.iommu_pt", OK, "pt.on", (passthrough and f"{log_source(d)}: {passthrough}")
                        or "/proc/cmdline: iommu=pt")]
    return [finding("kernel.iommu_pt", WARN, "pt.off", "/proc/cmdline has no iommu=pt", "vfiokit boot iommu --pt")]


def cmdline_pending(d: DoctorInput) -> list[Finding]:
    """Configured vs generated vs running (analyses/boot_state.py, as `boot status` says it)."""
    if d.boot is None:
        return [finding("kernel.cmdline_applied", SKIP, "boot.unread", "boot configuration not readable here")]
    s, where = d.boot.state, d.boot.deciding_file
    if s.refresh_adds:
        return [finding("kernel.cmdline_applied", WARN, "boot.refresh", f"{where}: {' '.join(s.refresh_adds)}",
                        d.boot.refresh, params=" ".join(s.refresh_adds), file=where)]
    if s.reboot_adds or s.reboot_removes:
        diff = " ".join([*(s.reboot_adds or ()), *(f"-{t}" for t in s.reboot_removes or ())])
        return [finding("kernel.cmdline_applied", WARN, "boot.reboot", f"{where} vs /proc/cmdline: {diff}",
                        "reboot", params=diff, file=where)]
    if s.reboot_adds is None:
        return [finding("kernel.cmdline_applied", SKIP, "unread", "/proc/cmdline not readable")]
    return [finding("kernel.cmdline_applied", OK, "boot.same", f"{where} matches /proc/cmdline", file=where)]


def acs_ignored(d: DoctorInput) -> list[Finding]:
    """pcie_acs_override is an out-of-tree patch (Proxmox kernels carry it); a stock kernel lists it
    among "Unknown kernel command line parameters" (init/main.c unknown_bootoption) and groups
    as if it were not there."""
    line = d.top.host.cmdline
    if line is None or not any(cl.key_of(t) == ACS_PARAM for t in cl.tokens(line)):
        return [finding("kernel.acs_override", OK, "acs.none", "/proc/cmdline: no pcie_acs_override")]
    support = kernel_support(d.top.host)
    if support.patched is False:
        return [finding("kernel.acs_override", WARN, "acs.ignored", support.evidence,
                        f"vfiokit boot remove {ACS_PARAM}")]
    status = OK if support.patched else SKIP
    return [finding("kernel.acs_override", status, "acs.honoured" if support.patched else "acs.unknown",
                    support.evidence)]


# -- modules -----------------------------------------------------------------------------------

def _named(entries: Any, wanted: tuple[str, ...]) -> tuple[list[str], str]:
    names = {e.get("module") for e in entries or ()}
    files = sorted({e.get("file", "") for e in entries or () if e.get("module") in wanted})
    return [m for m in wanted if m not in names], ", ".join(files)


def modules_loaded(d: DoctorInput) -> list[Finding]:
    """`lsmod | grep vfio` (pve-docs); qemu-server loads vfio-pci on demand, so missing is a warning."""
    mods = d.fact("modules")
    if mods is None:
        return [finding("modules.loaded", SKIP, "unread", "/proc/modules not readable (or not in this snapshot)")]
    missing = [m for m in VFIO_MODULES if m not in mods]
    if missing:
        return [finding("modules.loaded", WARN, "mods.missing", f"/proc/modules lacks {', '.join(missing)}",
                        f"modprobe {' '.join(missing)}", modules=", ".join(missing))]
    return [finding("modules.loaded", OK, "mods.loaded", "/proc/modules: " + ", ".join(VFIO_MODULES))]


def modules_at_boot(d: DoctorInput) -> list[Finding]:
    """systemd-modules-load reads modules-load.d(5) and Debian's /etc/modules (pve-docs lists
    vfio, vfio_iommu_type1, vfio_pci in /etc/modules-load.d/vfio.conf)."""
    entries = d.fact("boot_modules")
    if entries is None:
        return [finding("modules.at_boot", SKIP, "unread", "modules-load.d not in this source")]
    missing, files = _named(entries, VFIO_MODULES)
    if missing:
        return [finding("modules.at_boot", WARN, "boot.missing", f"not in /etc/modules or modules-load.d: "
                        f"{', '.join(missing)}", "vfiokit bind --persistent DEVICE", modules=", ".join(missing))]
    return [finding("modules.at_boot", OK, "boot.listed", files)]


def modules_initramfs(d: DoctorInput) -> list[Finding]:
    """initramfs-tools copies /etc/initramfs-tools/modules into the initramfs at
    `update-initramfs -u -k all`: vfio-pci then claims devices before their host driver does."""
    entries = d.fact("initramfs_modules")
    if entries is None:
        return [finding("modules.initramfs", SKIP, "initramfs.none",
                        "no /etc/initramfs-tools/modules (not initramfs-tools, or not in this source)")]
    missing, files = _named(entries, VFIO_MODULES)
    if missing:
        return [finding("modules.initramfs", WARN, "initramfs.missing",
                        f"/etc/initramfs-tools/modules lacks {', '.join(missing)}", "vfiokit bind --persistent DEVICE",
                        modules=", ".join(missing))]
    return [finding("modules.initramfs", OK, "initramfs.listed", files)]


def virqfd(d: DoctorInput) -> list[Finding]:
    """vfio_virqfd was folded into vfio in 6.2 (kernel commit "vfio: Fold vfio_virqfd.ko into
    vfio.ko"; Arch wiki: "has been folded into the base vfio module"); a line naming it makes
    systemd-modules-load fail at every boot."""
    version = kernel_version(d.top.host.kernel_release)
    stale = [e for e in [*(d.fact("boot_modules") or ()), *(d.fact("initramfs_modules") or ())]
             if e.get("module") == "vfio_virqfd"]
    if not stale:
        return [finding("modules.virqfd", OK, "virqfd.none", "no vfio_virqfd line")]
    where = ", ".join(f"{e['file']}:{e['line']}" for e in stale)
    if version is None or version < (6, 2):
        return [finding("modules.virqfd", OK, "virqfd.needed", where, release=d.top.host.kernel_release or "?")]
    return [finding("modules.virqfd", WARN, "virqfd.stale", where, f"delete the line ({where})",
                    release=d.top.host.kernel_release or "")]


# -- devices -----------------------------------------------------------------------------------
