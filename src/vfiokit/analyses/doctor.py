"""`vfiokit doctor`: every precondition of PCI passthrough, one small check each. Pure.

A check is a function over `DoctorInput` (the topology, the facts `sources.doctor_facts` gathered,
the boot state) returning `Finding`s: an id (`kernel.irq_remap`), a status (ok, warn, fail, or
skip when the fact it needs was not readable), a code and facts `render/doctor.py` words, the
evidence (the file or log line read) and the fix (a vfiokit command where one exists). `CHECKS`
is the list, in the order a user walks the chain: firmware -> kernel -> modules -> devices -> VMs.
Adding a check is adding a function and a line there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vfiokit.analyses.acs_override import PARAM as ACS_PARAM
from vfiokit.analyses.acs_override import kernel_support
from vfiokit.analyses.boot_state import BootState
from vfiokit.analyses.iommu_state import IOMMU_OFF, diagnose, kernel_version
from vfiokit.analyses.passthrough import Level, judge
from vfiokit.errors import BadInput, VfiokitError
from vfiokit.formats import cmdline as cl
from vfiokit.formats import pve_hostpci, pve_mapping
from vfiokit.model import Device, PciAddress, Topology

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
GROUPS = ("firmware", "kernel", "modules", "devices", "vms")

#: The modules Proxmox's guide loads for passthrough (pve-docs qm-pci-passthrough.adoc).
VFIO_MODULES = ("vfio", "vfio_iommu_type1", "vfio_pci")

#: AMD GPUs that do not come back from a VM without vendor-reset's device-specific reset: the
#: device table of gnif/vendor-reset `src/device-db.h` (Polaris 10/11/12, Vega 10/20, Navi 10/12/14,
#: Arcturus), vendor 0x1002.
VENDOR_RESET_IDS: dict[str, tuple[int, ...]] = {
    "Polaris 10": (0x67C0, 0x67C1, 0x67C2, 0x67C4, 0x67C7, 0x67D0, 0x67DF, 0x67C8, 0x67C9, 0x67CA,
                   0x67CC, 0x67CF, 0x6FDF),
    "Polaris 11": (0x67E0, 0x67E3, 0x67E8, 0x67EB, 0x67EF, 0x67FF, 0x67E1, 0x67E7, 0x67E9),
    "Polaris 12": (0x6980, 0x6981, 0x6985, 0x6986, 0x6987, 0x6995, 0x6997, 0x699F),
    "Vega 10": (0x6860, 0x6861, 0x6862, 0x6863, 0x6864, 0x6867, 0x6868, 0x6869, 0x686A, 0x686B,
                0x686C, 0x686D, 0x686E, 0x686F, 0x687F),
    "Vega 20": (0x66A0, 0x66A1, 0x66A2, 0x66A3, 0x66A4, 0x66A7, 0x66AF, 0x738C),
    "Navi 10": (0x7310, 0x7312, 0x7318, 0x7319, 0x731A, 0x731B, 0x731E, 0x731F, 0x1681),
    "Navi 12": (0x7360, 0x7362),
    "Navi 14": (0x7340, 0x7341, 0x7347, 0x734F),
}
_ATI = 0x1002


@dataclass(frozen=True)
class BootFacts:
    """The `boot status` facts: which file decides, its refresh command, configured vs running."""

    deciding_file: str
    refresh: str
    state: BootState


@dataclass(frozen=True)
class DoctorInput:
    top: Topology
    #: `sources.doctor_facts` layout; None when not gathered (a snapshot older than doctor).
    facts: Mapping[str, Any] | None
    boot: BootFacts | None = None
    #: `doctor VMID` / `doctor DEVICE`: narrow the VMs and devices looked at (a slot, 01:00, names
    #: every function of the card).
    vmid: str | None = None
    devices: tuple[PciAddress, ...] = ()

    def fact(self, key: str) -> Any:
        return (self.facts or {}).get(key)

    @property
    def vms(self) -> dict[str, dict[str, str]]:
        """The VMs looked at, with their options (every VM with a passed device, or the one named)."""
        allvms = (self.fact("pve") or {}).get("vms") or {}
        if self.vmid is not None:
            return {self.vmid: allvms.get(self.vmid, {})}
        return {k: v for k, v in allvms.items() if _hostpci(v)}


@dataclass(frozen=True)
class Finding:
    id: str
    status: str
    #: What `render/doctor.py` words: a code and its facts.
    code: str
    evidence: str
    fix: str | None = None
    #: "" for the host, else the device address or "VM 100".
    subject: str = ""
    facts: tuple[tuple[str, str], ...] = field(default=())

    @property
    def group(self) -> str:
        return self.id.split(".")[0]

    @property
    def fact(self) -> dict[str, str]:
        return dict(self.facts)


def _f(id_: str, status: str, code: str, evidence: str, fix: str | None = None, subject: str = "",
       **facts: object) -> Finding:
    return Finding(id_, status, code, evidence, fix, subject, tuple((k, str(v)) for k, v in facts.items()))


def _log(d: DoctorInput, *needles: str) -> str | None:
    """The first kept kernel-log line holding one of `needles`."""
    return next((ln for ln in d.top.host.dmesg or () if any(n in ln for n in needles)), None)


def _log_where(d: DoctorInput) -> str:
    return f"kernel log ({d.top.host.dmesg_source or 'source unknown'})"


# -- firmware ----------------------------------------------------------------------------------

def hypervisor(d: DoctorInput) -> list[Finding]:
    """Said first: inside a VM every other verdict is about the VM (CPU flag `hypervisor`, set by
    every hypervisor in CPUID leaf 1 ECX bit 31)."""
    flags = d.top.host.cpu_flags
    if flags is None:
        return [_f("firmware.hypervisor", SKIP, "unread", "/proc/cpuinfo not readable")]
    if "hypervisor" in flags:
        return [_f("firmware.hypervisor", WARN, "hypervisor.vm", "/proc/cpuinfo flags: hypervisor",
                   "run vfiokit doctor on the Proxmox host itself")]
    return [_f("firmware.hypervisor", OK, "hypervisor.bare", "/proc/cpuinfo flags: no hypervisor")]


def cpu_virt(d: DoctorInput) -> list[Finding]:
    """vmx (Intel VT-x) / svm (AMD-V): KVM's own requirement (arch/x86/kvm vmx/svm hardware_setup)."""
    flags = d.top.host.cpu_flags
    if flags is None:
        return [_f("firmware.virt", SKIP, "unread", "/proc/cpuinfo not readable")]
    have = [f for f in ("vmx", "svm") if f in flags]
    if have:
        return [_f("firmware.virt", OK, "virt.on", f"/proc/cpuinfo flags: {have[0]}", flag=have[0])]
    return [_f("firmware.virt", FAIL, "virt.off", "/proc/cpuinfo flags: neither vmx nor svm",
               "enable Intel VT-x / AMD SVM in the firmware setup")]


def acpi_iommu(d: DoctorInput) -> list[Finding]:
    """The firmware describes its IOMMU in ACPI: DMAR (Intel VT-d, drivers/iommu/intel/dmar.c
    dmar_table_detect) or IVRS (AMD-Vi, drivers/iommu/amd/init.c); none means the firmware
    switch is off."""
    tables = d.fact("acpi_tables")
    if tables is None:
        return [_f("firmware.acpi_iommu", SKIP, "unread", "/sys/firmware/acpi/tables not readable")]
    found = [t for t in ("DMAR", "IVRS") if t in tables]
    if found:
        return [_f("firmware.acpi_iommu", OK, "acpi.found", f"/sys/firmware/acpi/tables/{found[0]}",
                   table=found[0])]
    return [_f("firmware.acpi_iommu", FAIL, "acpi.missing",
               "/sys/firmware/acpi/tables has neither DMAR nor IVRS",
               "enable VT-d (Intel) or IOMMU / AMD-Vi (AMD) in the firmware setup")]


# -- kernel ------------------------------------------------------------------------------------

def iommu_off_param(d: DoctorInput) -> list[Finding]:
    """intel_iommu=off / amd_iommu=off / iommu=off (kernel-parameters.txt) win over the firmware."""
    line = d.top.host.cmdline
    if line is None:
        return [_f("kernel.iommu_off", SKIP, "unread", "/proc/cmdline not readable")]
    off = [t for t in cl.tokens(line) if t in IOMMU_OFF]
    if off:
        return [_f("kernel.iommu_off", FAIL, "off.given", f"/proc/cmdline: {' '.join(off)}",
                   f"vfiokit boot remove {' '.join(off)}", params=" ".join(off))]
    return [_f("kernel.iommu_off", OK, "off.none", "/proc/cmdline: no *iommu=off")]


def intel_flag(d: DoctorInput) -> list[Finding]:
    """Intel's IOMMU is off by default in kernels before 6.8 (pve-docs qm-pci-passthrough.adoc: the
    Proxmox VE 6.8 kernel turns it on, older ones need intel_iommu=on; drivers/iommu/intel
    CONFIG_INTEL_IOMMU_DEFAULT_ON)."""
    host = d.top.host
    version = kernel_version(host.kernel_release)
    if host.cpu_vendor != "GenuineIntel":
        return [_f("kernel.intel_iommu_on", OK, "intel.not_intel", f"CPU vendor {host.cpu_vendor or 'unknown'}",
                   vendor=host.cpu_vendor or "unknown")]
    if version is None or host.cmdline is None:
        return [_f("kernel.intel_iommu_on", SKIP, "unread", "kernel release or /proc/cmdline not readable")]
    # Units registered already: the kernel turned it on (a distro built with
    # CONFIG_INTEL_IOMMU_DEFAULT_ON), whatever the release.
    if version >= (6, 8) or cl.has(host.cmdline, "intel_iommu=on") or host.iommu_units:
        return [_f("kernel.intel_iommu_on", OK, "intel.fine",
                   f"kernel {host.kernel_release}, /proc/cmdline", release=host.kernel_release or "")]
    return [_f("kernel.intel_iommu_on", FAIL, "intel.needs_flag",
               f"kernel {host.kernel_release}, /proc/cmdline has no intel_iommu=on", "vfiokit boot iommu",
               release=host.kernel_release or "")]


def iommu_active(d: DoctorInput) -> list[Finding]:
    """Proxmox's test is /sys/class/iommu having an entry (pve-common SysFSTools check_iommu_support);
    vfio also needs groups (/sys/kernel/iommu_groups, vfio_group_find_or_alloc)."""
    host, top = d.top.host, d.top
    line = _log(d, "DMAR: IOMMU enabled", "AMD-Vi: Found IOMMU", "AMD-Vi: AMD IOMMUv2", "iommu: Default domain")
    if host.iommu_units and top.groups:
        ev = f"/sys/class/iommu: {', '.join(host.iommu_units)}; {len(top.groups)} IOMMU groups"
        return [_f("kernel.iommu", OK, "iommu.on", ev + (f"; {_log_where(d)}: {line}" if line else ""),
                   units=", ".join(host.iommu_units), groups=len(top.groups))]
    if host.iommu_units is None and top.groups is None:
        return [_f("kernel.iommu", SKIP, "unread", "/sys/class/iommu not readable")]
    why = diagnose(host)
    return [_f("kernel.iommu", FAIL, "iommu.off",
               f"/sys/class/iommu: {', '.join(host.iommu_units or ()) or 'empty'}; no IOMMU group",
               None, cause=why.explanation)]


_IR_LINES = ("DMAR-IR: Enabled IRQ remapping", "AMD-Vi: Interrupt remapping enabled")


def irq_remap(d: DoctorInput) -> list[Finding]:
    """Without interrupt remapping vfio_iommu_type1_attach_group refuses the group ("No interrupt
    remapping support. Use the module param allow_unsafe_interrupts", -EPERM), unless
    allow_unsafe_interrupts=1, which lets a guest's device forge MSIs to the host."""
    unsafe = d.fact("allow_unsafe_interrupts")
    if d.top.host.dmesg is None:
        return [_f("kernel.irq_remap", SKIP, "log.unread", "no kernel log readable (dmesg, journalctl -k, "
                   "/var/log/kern.log)")]
    line = _log(d, *_IR_LINES)
    if line:
        return [_f("kernel.irq_remap", OK, "irq.on", f"{_log_where(d)}: {line}")]
    # The boot's first line says the log reaches back to the boot (the ring buffer has not wrapped,
    # and the capture kept the remapping lines: older snapshots filtered without both).
    if _log(d, "Linux version") is None:
        return [_f("kernel.irq_remap", SKIP, "log.partial",
                   f"{_log_where(d)} does not reach back to the boot")]
    if unsafe in ("Y", "1"):
        return [_f("kernel.irq_remap", WARN, "irq.unsafe",
                   "no interrupt remapping line in the kernel log; "
                   "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts: Y")]
    # The kernel says why when it gives up (amd_iommu init: "[Firmware Bug]: No southbridge IOAPIC
    # found" then "Disabling interrupt remapping"; intel irq_remapping.c "Not enabling interrupt
    # remapping"): that line is the evidence.
    said = _log(d, "Disabling interrupt remapping", "Not enabling interrupt remapping",
                "IRQ remapping was disabled")
    why = said or f"no {' / '.join(_IR_LINES)} line"
    return [_f("kernel.irq_remap", FAIL, "irq.off", f"{_log_where(d)}: {why}",
               "vfiokit boot add vfio_iommu_type1.allow_unsafe_interrupts=1")]


def iommu_pt(d: DoctorInput) -> list[Finding]:
    """iommu=pt keeps host devices out of DMA translation (identity domain): host I/O at full speed,
    no effect on passed devices (pve-docs qm-pci-passthrough.adoc). Only a warning."""
    line = d.top.host.cmdline
    if line is None:
        return [_f("kernel.iommu_pt", SKIP, "unread", "/proc/cmdline not readable")]
    passthrough = _log(d, "Default domain type: Passthrough")
    if cl.has(line, "iommu=pt") or passthrough:
        return [_f("kernel.iommu_pt", OK, "pt.on", (passthrough and f"{_log_where(d)}: {passthrough}")
                   or "/proc/cmdline: iommu=pt")]
    return [_f("kernel.iommu_pt", WARN, "pt.off", "/proc/cmdline has no iommu=pt", "vfiokit boot iommu --pt")]


def cmdline_pending(d: DoctorInput) -> list[Finding]:
    """Configured vs generated vs running (analyses/boot_state.py, as `boot status` says it)."""
    if d.boot is None:
        return [_f("kernel.cmdline_applied", SKIP, "boot.unread", "boot configuration not readable here")]
    s, where = d.boot.state, d.boot.deciding_file
    if s.refresh_adds:
        return [_f("kernel.cmdline_applied", WARN, "boot.refresh", f"{where}: {' '.join(s.refresh_adds)}",
                   d.boot.refresh, params=" ".join(s.refresh_adds), file=where)]
    if s.reboot_adds or s.reboot_removes:
        diff = " ".join([*(s.reboot_adds or ()), *(f"-{t}" for t in s.reboot_removes or ())])
        return [_f("kernel.cmdline_applied", WARN, "boot.reboot", f"{where} vs /proc/cmdline: {diff}",
                   "reboot", params=diff, file=where)]
    if s.reboot_adds is None:
        return [_f("kernel.cmdline_applied", SKIP, "unread", "/proc/cmdline not readable")]
    return [_f("kernel.cmdline_applied", OK, "boot.same", f"{where} matches /proc/cmdline", file=where)]


def acs_ignored(d: DoctorInput) -> list[Finding]:
    """pcie_acs_override is an out-of-tree patch (Proxmox kernels carry it); a stock kernel lists it
    among "Unknown kernel command line parameters" (init/main.c unknown_bootoption) and groups
    as if it were not there."""
    line = d.top.host.cmdline
    if line is None or not any(cl.key_of(t) == ACS_PARAM for t in cl.tokens(line)):
        return [_f("kernel.acs_override", OK, "acs.none", "/proc/cmdline: no pcie_acs_override")]
    support = kernel_support(d.top.host)
    if support.patched is False:
        return [_f("kernel.acs_override", WARN, "acs.ignored", support.evidence,
                   f"vfiokit boot remove {ACS_PARAM}")]
    status = OK if support.patched else SKIP
    return [_f("kernel.acs_override", status, "acs.honoured" if support.patched else "acs.unknown",
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
        return [_f("modules.loaded", SKIP, "unread", "/proc/modules not readable (or not in this snapshot)")]
    missing = [m for m in VFIO_MODULES if m not in mods]
    if missing:
        return [_f("modules.loaded", WARN, "mods.missing", f"/proc/modules lacks {', '.join(missing)}",
                   f"modprobe {' '.join(missing)}", modules=", ".join(missing))]
    return [_f("modules.loaded", OK, "mods.loaded", "/proc/modules: " + ", ".join(VFIO_MODULES))]


def modules_at_boot(d: DoctorInput) -> list[Finding]:
    """systemd-modules-load reads modules-load.d(5) and Debian's /etc/modules (pve-docs lists
    vfio, vfio_iommu_type1, vfio_pci in /etc/modules-load.d/vfio.conf)."""
    entries = d.fact("boot_modules")
    if entries is None:
        return [_f("modules.at_boot", SKIP, "unread", "modules-load.d not in this source")]
    missing, files = _named(entries, VFIO_MODULES)
    if missing:
        return [_f("modules.at_boot", WARN, "boot.missing", f"not in /etc/modules or modules-load.d: "
                   f"{', '.join(missing)}", "vfiokit bind DEVICE", modules=", ".join(missing))]
    return [_f("modules.at_boot", OK, "boot.listed", files)]


def modules_initramfs(d: DoctorInput) -> list[Finding]:
    """initramfs-tools copies /etc/initramfs-tools/modules into the initramfs at
    `update-initramfs -u -k all`: vfio-pci then claims devices before their host driver does."""
    entries = d.fact("initramfs_modules")
    if entries is None:
        return [_f("modules.initramfs", SKIP, "initramfs.none",
                   "no /etc/initramfs-tools/modules (not initramfs-tools, or not in this source)")]
    missing, files = _named(entries, VFIO_MODULES)
    if missing:
        return [_f("modules.initramfs", WARN, "initramfs.missing",
                   f"/etc/initramfs-tools/modules lacks {', '.join(missing)}", "vfiokit bind DEVICE",
                   modules=", ".join(missing))]
    return [_f("modules.initramfs", OK, "initramfs.listed", files)]


def virqfd(d: DoctorInput) -> list[Finding]:
    """vfio_virqfd was folded into vfio in 6.2 (kernel commit "vfio: Fold vfio_virqfd.ko into
    vfio.ko"; Arch wiki: "has been folded into the base vfio module"); a line naming it makes
    systemd-modules-load fail at every boot."""
    version = kernel_version(d.top.host.kernel_release)
    stale = [e for e in [*(d.fact("boot_modules") or ()), *(d.fact("initramfs_modules") or ())]
             if e.get("module") == "vfio_virqfd"]
    if not stale:
        return [_f("modules.virqfd", OK, "virqfd.none", "no vfio_virqfd line")]
    where = ", ".join(f"{e['file']}:{e['line']}" for e in stale)
    if version is None or version < (6, 2):
        return [_f("modules.virqfd", OK, "virqfd.needed", where, release=d.top.host.kernel_release or "?")]
    return [_f("modules.virqfd", WARN, "virqfd.stale", where, f"delete the line ({where})",
               release=d.top.host.kernel_release or "")]


# -- devices -----------------------------------------------------------------------------------

def _hostpci(opts: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in opts.items() if k.startswith("hostpci")}


def _parse(value: str) -> pve_hostpci.HostPci | None:
    try:
        return pve_hostpci.parse_hostpci(value)
    except BadInput:  # a hand-edited value: the VM check says it, the device walk skips it
        return None


def _mapped_paths(d: DoctorInput, mapping: str) -> list[str]:
    pve = d.fact("pve") or {}
    node = pve.get("node") or ""
    return pve_mapping.paths_on_node({mapping: (pve.get("mappings") or {}).get(mapping, [])}, node)[mapping]


def _passed(d: DoctorInput, opts: Mapping[str, str]) -> list[PciAddress]:
    """Every function a VM's hostpciN entries take on this node."""
    out: list[PciAddress] = []
    for value in _hostpci(opts).values():
        hp = _parse(value)
        if hp is None:
            continue
        ids = list(hp.host) or (_mapped_paths(d, hp.mapping)[:1] if hp.mapping else [])
        for hid in ids:
            out += [dev.address for dev in d.top.devices if pve_hostpci.covers(hid, str(dev.address))]
    return out


def targets(d: DoctorInput) -> list[Device]:
    """The devices looked at: the one named, else those the VMs looked at take, else every
    function bound to vfio-pci (meant for a VM)."""
    if d.devices:
        return [d.top.device(a) for a in d.devices]
    seen: dict[PciAddress, Device] = {}
    for opts in d.vms.values():
        for a in _passed(d, opts):
            seen.setdefault(a, d.top.by_address[a])
    if d.vmid is None:
        for dev in d.top.devices:
            if dev.driver == "vfio-pci":
                seen.setdefault(dev.address, dev)
    return [seen[a] for a in sorted(seen)]


def _passed_along(d: DoctorInput, dev: Device) -> set[PciAddress]:
    if d.devices:
        return set(d.devices)
    return {a for opts in d.vms.values() if dev.address in (p := _passed(d, opts)) for a in p}


def device_group(d: DoctorInput) -> list[Finding]:
    """The `check` verdict (analyses/passthrough.judge): Proxmox binds the whole group to vfio-pci
    at VM start (qemu-server PCI.pm prepare_pci_device -> SysFSTools pci_dev_group_bind_to_vfio)."""
    out = []
    for dev in targets(d):
        addr = str(dev.address)
        try:
            v = judge(d.top, [dev.address])
        except VfiokitError as e:
            out.append(_f("devices.group", FAIL, "group.unjudged", str(e), subject=addr))
            continue
        members = [m for m in v.members if m.address != dev.address and m.leaves_host]
        group = ", ".join(str(g) for g in v.groups)
        others = ", ".join(m.address.short + (f" ({m.device.driver})" if m.device.driver else "")
                           for m in members) or "none"
        critical = ", ".join(m.address.short for m in members if m.critical)
        status = {Level.ALONE: OK, Level.HARMLESS: OK, Level.COSTLY: WARN, Level.UNSAFE: FAIL}[v.level]
        out.append(_f("devices.group", status, f"group.{v.level.name.lower()}",
                      f"IOMMU group {group}: other functions {others}",
                      None if status == OK else f"vfiokit check {dev.address.short}", subject=addr,
                      group=group, others=others, critical=critical or "none"))
    return out


def _configured_ids(d: DoctorInput, dev: Device) -> str | None:
    for e in d.fact("vfio_ids") or ():
        if dev.ids and dev.ids in e.get("ids", ()):
            return f"{e['file']}:{e['line']}"
    ids_param = next((t for t in cl.tokens(d.top.host.cmdline or "") if cl.key_of(t) == "vfio-pci.ids"), None)
    if ids_param and dev.ids and dev.ids in ids_param.partition("=")[2].lower().split(","):
        return "/proc/cmdline"
    return None


def device_driver(d: DoctorInput) -> list[Finding]:
    """The driver now against vfio-pci, which Proxmox binds at VM start (SysFSTools
    pci_dev_bind_to_vfio). Configured for vfio-pci yet owned by another driver: that driver
    loaded first (a missing `softdep DRIVER pre: vfio-pci`, Arch wiki PCI passthrough)."""
    out = []
    for dev in targets(d):
        addr = str(dev.address)
        configured = _configured_ids(d, dev)
        if dev.driver is None:
            out.append(_f("devices.driver", SKIP, "unread", "driver link not read", subject=addr))
        elif dev.driver in ("vfio-pci", ""):
            out.append(_f("devices.driver", OK, "driver.free" if dev.driver == "" else "driver.vfio",
                          f"{addr}: driver {dev.driver or 'none'}", subject=addr))
        elif configured:
            out.append(_f("devices.driver", FAIL, "driver.raced", f"{addr}: driver {dev.driver}; vfio-pci "
                          f"ids in {configured}", f"softdep {dev.driver} pre: vfio-pci (in /etc/modprobe.d)",
                          subject=addr, driver=dev.driver, where=configured))
        else:
            out.append(_f("devices.driver", WARN, "driver.host", f"{addr}: driver {dev.driver}",
                          f"vfiokit bind {dev.address.short}", subject=addr, driver=dev.driver))
    return out


def _vendor_reset_family(dev: Device) -> str | None:
    if dev.vendor_id != _ATI or dev.device_id is None:
        return None
    return next((name for name, ids in VENDOR_RESET_IDS.items() if dev.device_id in ids), None)


def device_reset(d: DoctorInput) -> list[Finding]:
    """`reset_method` (drivers/pci/pci-sysfs.c reset_method_show): empty means no way to reset the
    device between VM runs. AMD families in vendor-reset's table (src/device-db.h) hang after a
    guest ("Unknown PCI header type '127'") unless vendor-reset gives them `device_specific`."""
    out = []
    for dev in targets(d):
        addr = str(dev.address)
        family = _vendor_reset_family(dev)
        methods = dev.reset_methods
        if family and (methods is None or "device_specific" not in methods):
            out.append(_f("devices.reset", WARN, "reset.vendor", f"{addr}: {dev.ids} (AMD {family}), "
                          f"reset_method: {' '.join(methods or ()) or 'none'}",
                          "install vendor-reset (github.com/gnif/vendor-reset), load it at boot, "
                          f"echo device_specific > /sys/bus/pci/devices/{addr}/reset_method",
                          subject=addr, family=family))
        elif methods is None:
            out.append(_f("devices.reset", SKIP, "unread", "reset_method not read", subject=addr))
        elif not methods:
            out.append(_f("devices.reset", WARN, "reset.none", f"{addr}: reset_method empty", subject=addr))
        else:
            out.append(_f("devices.reset", OK, "reset.ok", f"{addr}: reset_method {' '.join(methods)}",
                          subject=addr, methods=" ".join(methods)))
    return out


def _iomem_ranges(d: DoctorInput) -> list[tuple[int, int, str]] | None:
    entries = d.fact("iomem")
    if entries is None:
        return None
    return [(int(e["start"], 16), int(e["end"], 16), e["name"]) for e in entries]


def device_framebuffer(d: DoctorInput) -> list[Finding]:
    """A firmware framebuffer (BOOTFB, efifb, simplefb...) registered inside a device's BAR keeps
    vfio-pci from claiming it: "vfio-pci ...: BAR 0: can't reserve [mem ...]"
    (pci_request_selected_regions; siderolabs/talos#14356). `initcall_blacklist=sysfb_init` stops
    the kernel from registering it (drivers/firmware/sysfb.c sysfb_init)."""
    ranges = _iomem_ranges(d)
    out = []
    for dev in targets(d):
        addr = str(dev.address)
        said = _log(d, f"{addr}: BAR")
        if said and "can't reserve" in said:
            out.append(_f("devices.framebuffer", FAIL, "fb.reserve", f"{_log_where(d)}: {said}",
                          "vfiokit boot add initcall_blacklist=sysfb_init", subject=addr))
            continue
        if ranges is None:
            out.append(_f("devices.framebuffer", SKIP, "unread", "/proc/iomem not in this source", subject=addr))
            continue
        if ranges and all(s == 0 and e == 0 for s, e, _ in ranges):
            out.append(_f("devices.framebuffer", SKIP, "iomem.zeroed", "/proc/iomem read without root: "
                          "addresses shown as 0", subject=addr))
            continue
        bars = [(s, e) for s, e, n in ranges if n == addr]
        fbs = [(s, e, n) for s, e, n in ranges if n not in (addr,) and not n[:1].isdigit()]
        hit = next(((s, e, n) for s, e, n in fbs for bs, be in bars if bs <= s and e <= be), None)
        if hit:
            out.append(_f("devices.framebuffer", FAIL, "fb.in_bar",
                          f"/proc/iomem: {hit[0]:x}-{hit[1]:x} : {hit[2]} inside {addr}'s BAR",
                          "vfiokit boot add initcall_blacklist=sysfb_init", subject=addr, fb=hit[2]))
        else:
            out.append(_f("devices.framebuffer", OK, "fb.none", f"/proc/iomem: no framebuffer in {addr}'s BARs",
                          subject=addr))
    return out


def _is_display(dev: Device) -> bool:
    return dev.base_class == 0x03


def boot_gpu(d: DoctorInput) -> list[Finding]:
    """The boot VGA (`boot_vga`, drivers/pci/pci-sysfs.c; vgaarb's default device) holds the
    console and its shadowed ROM; passing it with no second GPU leaves the host headless (TrueNAS
    refuses to isolate the last GPU)."""
    boot = [dev for dev in d.top.devices if dev.boot_vga]
    if not boot:
        return [_f("devices.boot_gpu", OK if any(dv.boot_vga is not None for dv in d.top.devices) else SKIP,
                   "bootvga.none", "no device with boot_vga=1")]
    gpu = boot[0]
    addr = str(gpu.address)
    others = [dv for dv in d.top.devices if _is_display(dv) and not dv.address.same_slot(gpu.address)]
    passed = {t.address for t in targets(d)}
    if gpu.address not in passed:
        return [_f("devices.boot_gpu", OK, "bootvga.kept", f"{addr}: boot_vga=1", subject=addr)]
    if not others:
        return [_f("devices.boot_gpu", FAIL, "bootvga.only", f"{addr}: boot_vga=1, no other display device",
                   "add a second GPU or choose the other one as primary in the firmware setup", subject=addr)]
    return [_f("devices.boot_gpu", WARN, "bootvga.passed", f"{addr}: boot_vga=1; other GPU "
               f"{', '.join(o.address.short for o in others)}",
               "choose the other GPU as primary in the firmware setup", subject=addr,
               other=others[0].address.short)]


def gpu_audio(d: DoctorInput) -> list[Finding]:
    """A GPU's HDMI audio is another function of the same card; left behind, the guest driver
    misbehaves and the group stays shared (Proxmox's "All Functions" passes the slot)."""
    out = []
    for dev in targets(d):
        if not _is_display(dev):
            continue
        audio = [a for a in d.top.devices if a.address.same_slot(dev.address) and a.class_id == 0x0403]
        along = _passed_along(d, dev)
        left = [a for a in audio if a.address not in along]
        if left:
            out.append(_f("devices.gpu_audio", WARN, "audio.left", f"{left[0].address}: audio function of "
                          f"{dev.address.short} not passed", f"pass the whole slot: hostpciN: {dev.address.slot_id}",
                          subject=str(dev.address), audio=left[0].address.short))
        elif audio:
            out.append(_f("devices.gpu_audio", OK, "audio.passed", f"{audio[0].address} passed along",
                          subject=str(dev.address)))
    return out


# -- VMs ---------------------------------------------------------------------------------------

def _subject(vmid: str) -> str:
    return f"VM {vmid}"


def _is_q35(opts: Mapping[str, str]) -> bool:
    # qemu-server machine_type_is_q35: the machine type contains q35.
    machine = opts.get("machine", "").split(",")[0].removeprefix("type=")
    return "q35" in machine


def vm_pcie(d: DoctorInput) -> list[Finding]:
    """qemu-server PCI.pm print_hostpci_devices: "q35 machine model is not enabled" when a
    hostpci has pcie=1 on an i440fx VM: the VM does not start."""
    out = []
    for vmid, opts in d.vms.items():
        keys = [k for k, v in _hostpci(opts).items() if (hp := _parse(v)) and hp.flag("pcie")]
        if not keys:
            continue
        if _is_q35(opts):
            out.append(_f("vms.pcie_q35", OK, "pcie.q35", f"machine {opts.get('machine')}", subject=_subject(vmid)))
        else:
            out.append(_f("vms.pcie_q35", FAIL, "pcie.i440fx", f"{', '.join(keys)}: pcie=1; machine "
                          f"{opts.get('machine', 'i440fx (default)')}", f"qm set {vmid} --machine q35",
                          subject=_subject(vmid), keys=", ".join(keys)))
    return out


def vm_primary_gpu(d: DoctorInput) -> list[Finding]:
    """x-vga=1 with SeaBIOS works only for legacy-VGA cards; OVMF needs an EFI disk to keep its
    variables (pve-docs qm-pci-passthrough.adoc, "GPU passthrough": OVMF recommended)."""
    out = []
    for vmid, opts in d.vms.items():
        keys = [k for k, v in _hostpci(opts).items() if (hp := _parse(v)) and hp.flag("x-vga")]
        if not keys:
            continue
        bios = opts.get("bios", "seabios")
        if bios != "ovmf":
            out.append(_f("vms.primary_gpu", WARN, "xvga.seabios", f"{keys[0]}: x-vga=1; bios {bios}",
                          f"qm set {vmid} --bios ovmf --efidisk0 STORAGE:1,efitype=4m", subject=_subject(vmid)))
        elif "efidisk0" not in opts:
            out.append(_f("vms.primary_gpu", WARN, "xvga.no_efidisk", f"{keys[0]}: x-vga=1; bios ovmf, no efidisk0",
                          f"qm set {vmid} --efidisk0 STORAGE:1,efitype=4m", subject=_subject(vmid)))
        else:
            out.append(_f("vms.primary_gpu", OK, "xvga.ovmf", "bios ovmf with efidisk0", subject=_subject(vmid)))
    return out


def vm_balloon(d: DoctorInput) -> list[Finding]:
    """A passed device can DMA anywhere in guest RAM, so QEMU pins all of it (vfio type1
    vfio_pin_pages_remote): the balloon cannot give memory back (pve-docs qm.adoc, ballooning)."""
    out = []
    for vmid, opts in d.vms.items():
        if not _hostpci(opts):
            continue
        if opts.get("balloon") == "0":
            out.append(_f("vms.balloon", OK, "balloon.off", "balloon: 0", subject=_subject(vmid)))
        else:
            out.append(_f("vms.balloon", WARN, "balloon.on", f"balloon: {opts.get('balloon', 'not set (on)')}",
                          f"qm set {vmid} --balloon 0", subject=_subject(vmid)))
    return out


def vm_shared(d: DoctorInput) -> list[Finding]:
    """Two VMs holding the same device or mapping: the second one to start fails (qemu-server
    PCI.pm reserve_pci_usage: "PCI device '...' already in use by VMID ..."); with both on boot,
    one of them never comes up."""
    allvms = (d.fact("pve") or {}).get("vms") or {}
    out = []
    for vmid, opts in d.vms.items():
        mine = set(_passed(d, opts))
        maps = {hp.mapping for v in _hostpci(opts).values() if (hp := _parse(v)) and hp.mapping}
        for other, oopts in sorted(allvms.items()):
            if other == vmid or oopts.get("onboot") != "1":
                continue
            omaps = {hp.mapping for v in _hostpci(oopts).values() if (hp := _parse(v)) and hp.mapping}
            shared = sorted(mine & set(_passed(d, oopts)))
            what = ", ".join([*(a.short for a in shared), *(f"mapping {m}" for m in sorted(maps & omaps))])
            if what:
                both = opts.get("onboot") == "1"
                out.append(_f("vms.shared", FAIL if both else WARN, "shared.onboot" if both else "shared.other",
                              f"VM {other} (onboot: 1) also takes {what}",
                              f"qm set {other if both else vmid} --onboot 0, or give each VM its own device",
                              subject=_subject(vmid), other=other, what=what))
        if _hostpci(opts) and not any(f.subject == _subject(vmid) for f in out):
            out.append(_f("vms.shared", OK, "shared.none", "no on-boot VM takes the same device",
                          subject=_subject(vmid)))
    return out


def vm_devices(d: DoctorInput) -> list[Finding]:
    """Each hostpci must resolve on this node: a host id to a present device ("no PCI device found
    for '...'", PVE::SysFSTools::lspci), a mapping to an entry for this node whose id and
    iommugroup still match (pve-guest-common PVE/Mapping/PCI.pm assert_valid: "... mismatch")."""
    pve = d.fact("pve") or {}
    node = pve.get("node") or ""
    out = []
    for vmid, opts in d.vms.items():
        for key, value in sorted(_hostpci(opts).items()):
            hp = _parse(value)
            subject = _subject(vmid)
            if hp is None:
                out.append(_f("vms.devices", FAIL, "hostpci.bad", f"{key}: {value}", subject=subject, key=key))
                continue
            for hid in hp.host:
                if not any(pve_hostpci.covers(hid, str(dv.address)) for dv in d.top.devices):
                    out.append(_f("vms.devices", FAIL, "hostpci.gone", f"{key}: {hid}", subject=subject,
                                  key=key, id=hid))
            if hp.mapping:
                entries = [pve_mapping.parse_map_entry(e) for e in (pve.get("mappings") or {}).get(hp.mapping, [])]
                mine = [e for e in entries if e.get("node") == node]
                if not mine:
                    out.append(_f("vms.devices", FAIL, "mapping.no_node", f"{key}: mapping={hp.mapping}; "
                                  f"/etc/pve/mapping/pci.cfg has no entry for node {node}", subject=subject,
                                  mapping=hp.mapping, node=node))
                for e in mine:
                    out += _mapping_entry(d, subject, key, hp.mapping, e)
        if _hostpci(opts) and not any(f.subject == _subject(vmid) for f in out):
            out.append(_f("vms.devices", OK, "hostpci.found", "every hostpci resolves on this node",
                          subject=_subject(vmid)))
    return out


def _mapping_entry(d: DoctorInput, subject: str, key: str, mapping: str, e: dict[str, str]) -> list[Finding]:
    path = e.get("path", "")
    try:
        dev = d.top.by_address.get(PciAddress.parse(path.split(";")[0]))
    except BadInput:  # a path qemu-server would refuse as well
        dev = None
    where = f"mapping {mapping} ({path})"
    if dev is None:
        return [_f("vms.devices", FAIL, "mapping.gone", f"{where}: no such device", subject=subject,
                   mapping=mapping, path=path)]
    wrong = []
    if e.get("id") and dev.ids and e["id"].lower() != dev.ids:
        wrong.append(f"id {e['id']} != {dev.ids}")
    if e.get("iommugroup") and dev.iommu_group is not None and e["iommugroup"] != str(dev.iommu_group):
        wrong.append(f"iommugroup {e['iommugroup']} != {dev.iommu_group}")
    if wrong:
        return [_f("vms.devices", FAIL, "mapping.mismatch", f"{where}: {'; '.join(wrong)}",
                   "update the mapping in Datacenter > Resource Mappings", subject=subject, mapping=mapping,
                   wrong="; ".join(wrong))]
    return []


#: The checks, in the order the chain is walked (firmware -> kernel -> modules -> devices -> VMs).
CHECKS: tuple[Callable[[DoctorInput], list[Finding]], ...] = (
    hypervisor, cpu_virt, acpi_iommu,
    iommu_off_param, intel_flag, iommu_active, irq_remap, iommu_pt, cmdline_pending, acs_ignored,
    modules_loaded, modules_at_boot, modules_initramfs, virqfd,
    boot_gpu, device_group, device_driver, device_reset, device_framebuffer, gpu_audio,
    vm_pcie, vm_primary_gpu, vm_balloon, vm_shared, vm_devices,
)


def run(d: DoctorInput) -> list[Finding]:
    """Every check's findings, in `CHECKS` order."""
    return [f for check in CHECKS for f in check(d)]


def worst(findings: list[Finding]) -> str:
    statuses = {f.status for f in findings}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else OK
