"""Words for `vfiokit doctor`'s findings (analyses/doctor.py): one sentence per code, the
checklist grouped firmware -> kernel -> modules -> devices -> VMs, and the summary line."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from vfiokit.analyses.doctor_input import GROUPS, Finding
from vfiokit.errors import BadInput
from vfiokit.model import PciAddress, Topology
from vfiokit.pciids import PciIds

#: Each finding's code and its sentence (formatted with the finding's facts).
MESSAGES = {
    "unread": "not checked: the fact it needs is not in this source",
    "hypervisor.vm": "this is a virtual machine (CPU flag 'hypervisor'): every verdict below is about the VM",
    "hypervisor.bare": "running on the machine itself, not in a VM",
    "virt.on": "CPU virtualization is on ({flag})",
    "virt.off": "CPU virtualization (VT-x / AMD-V) is off in the firmware",
    "acpi.found": "the firmware describes its IOMMU (ACPI {table} table)",
    "acpi.missing": "the firmware does not describe an IOMMU (no ACPI DMAR / IVRS table): VT-d / AMD-Vi is off",
    "off.given": "the kernel command line turns the IOMMU off ({params})",
    "off.none": "nothing on the command line turns the IOMMU off",
    "intel.not_intel": "not an Intel CPU ({vendor}): no intel_iommu=on needed",
    "intel.fine": "Intel IOMMU on by default or asked for (kernel {release})",
    "intel.needs_flag": "Intel CPU with kernel {release}: before 6.8 the IOMMU stays off without intel_iommu=on",
    "iommu.on": "the kernel IOMMU is active ({units}; {groups} groups)",
    "iommu.off": "the kernel formed no IOMMU group: {cause}",
    "log.unread": "interrupt remapping not checked: no kernel log was readable",
    "log.partial": "interrupt remapping not checked: the kernel log no longer reaches back to the boot",
    "irq.on": "interrupt remapping is enabled",
    "irq.unsafe": "no interrupt remapping; allow_unsafe_interrupts=1 lets vfio work anyway, at a cost: "
                  "a passed device can forge interrupts to the host (MSI injection)",
    "irq.off": "no interrupt remapping: vfio refuses the group ('No interrupt remapping support') unless "
               "allow_unsafe_interrupts=1, which lets a passed device forge interrupts to the host",
    "pt.on": "host devices bypass IOMMU translation (iommu=pt)",
    "pt.off": "no iommu=pt: host devices' DMA goes through IOMMU translation (slower host I/O)",
    "boot.unread": "configured vs running command line not checked (no boot configuration here)",
    "boot.refresh": "{file} sets {params}, but the boot loader's configuration was not refreshed",
    "boot.reboot": "the configured command line is not the running one ({params}): reboot to apply",
    "boot.same": "the running command line is the configured one ({file})",
    "acs.none": "no ACS override asked for",
    "acs.ignored": "pcie_acs_override is on the command line, but this kernel ignores it: groups are unchanged",
    "acs.honoured": "the ACS override is honoured by this kernel",
    "acs.unknown": "pcie_acs_override given; whether this kernel honours it is unknown",
    "mods.missing": "vfio modules not loaded now: {modules}",
    "mods.loaded": "vfio modules loaded",
    "boot.missing": "vfio modules not loaded at boot: {modules}",
    "boot.listed": "vfio modules loaded at boot",
    "initramfs.none": "initramfs not checked (no /etc/initramfs-tools/modules)",
    "initramfs.missing": "vfio modules not in the initramfs: {modules}",
    "initramfs.listed": "vfio modules in the initramfs",
    "virqfd.none": "no stale vfio_virqfd line",
    "virqfd.needed": "vfio_virqfd listed, as kernel {release} (before 6.2) needs",
    "virqfd.stale": "vfio_virqfd no longer exists on kernel {release} (folded into vfio in 6.2): "
                    "loading it fails at every boot",
    "group.alone": "alone in its IOMMU group {group}",
    "group.harmless": "its IOMMU group {group} holds only bridges besides it",
    "group.costly": "IOMMU group {group} also holds {others}: they leave the host with it",
    "group.unsafe": "IOMMU group {group} also holds something the host cannot live without ({critical}); "
                    "all of {others} would go to vfio-pci",
    "group.unjudged": "its group cannot be judged",
    "driver.free": "no driver bound: vfio-pci can take it",
    "driver.vfio": "bound to vfio-pci",
    "driver.raced": "configured for vfio-pci ({where}) but {driver} took it first",
    "driver.host": "bound to {driver} now: Proxmox unbinds it at VM start; bind it to vfio-pci at boot instead",
    "reset.vendor": "AMD {family} GPU: does not reset between VM runs without vendor-reset",
    "reset.none": "no reset method: the device may not come back after a VM stops",
    "reset.ok": "reset method {methods}",
    "iomem.zeroed": "framebuffer not checked: /proc/iomem shows addresses only to root",
    "fb.in_bar": "a console framebuffer ({fb}) sits in its BAR: vfio-pci will say 'BAR n: can't reserve'",
    "fb.reserve": "vfio-pci could not reserve one of its BARs: a console framebuffer holds it",
    "fb.none": "no console framebuffer in its BARs",
    "bootvga.none": "no boot VGA device known",
    "bootvga.kept": "boot GPU (host console), kept by the host",
    "bootvga.only": "the boot GPU and the only one: passing it leaves the host without a console",
    "bootvga.passed": "the boot GPU is passed; {other} could take the console",
    "audio.left": "its audio function {audio} is not passed with it",
    "audio.passed": "its audio function is passed with it",
    "pcie.q35": "pcie=1 on a q35 machine",
    "pcie.i440fx": "{keys} asks pcie=1, which needs the q35 machine type: the VM will not start",
    "xvga.seabios": "primary GPU (x-vga=1) with SeaBIOS: OVMF with an EFI disk is what works for most cards",
    "xvga.no_efidisk": "primary GPU with OVMF but no EFI disk: the firmware settings are not kept",
    "xvga.ovmf": "primary GPU with OVMF and an EFI disk",
    "balloon.off": "ballooning off",
    "balloon.on": "ballooning on with a passed device: all guest RAM is pinned, the balloon cannot work",
    "shared.onboot": "VM {other} also takes {what} and both start on boot: one of them fails",
    "shared.other": "VM {other} (starts on boot) also takes {what}: this VM cannot start while it runs",
    "shared.none": "no other on-boot VM takes its devices",
    "hostpci.bad": "{key} cannot be read",
    "hostpci.gone": "{key}: no device {id} on this node: Proxmox says 'no PCI device found'",
    "mapping.no_node": "mapping {mapping} has no device for node {node}",
    "mapping.gone": "mapping {mapping}: {path} is not on this node",
    "mapping.mismatch": "mapping {mapping} no longer matches this node ({wrong}): Proxmox refuses to start",
    "hostpci.found": "every passed device resolves on this node",
}

_MARK = {"ok": "[green]ok  [/green]", "warn": "[yellow]warn[/yellow]", "fail": "[red]fail[/red]",
         "skip": "[dim]skip[/dim]"}


def sentence(f: Finding) -> str:
    return MESSAGES[f.code].format(**f.fact)


def summary(findings: list[Finding]) -> str:
    n = {s: sum(1 for f in findings if f.status == s) for s in ("ok", "warn", "fail", "skip")}
    worst = "fail" if n["fail"] else "warn" if n["warn"] else "ok"
    return (f"{worst}: {n['ok']} ok, {n['warn']} warning(s), {n['fail']} failure(s), "
            f"{n['skip']} not checked")


def _who(f: Finding, top: Topology, ids: PciIds) -> str:
    """The subject as the user knows it: `07:00.0 Marvell ... 88SE9215 ...` for a device."""
    if not f.subject:
        return ""
    try:
        dev = top.by_address.get(PciAddress.parse(f.subject))
    except BadInput:
        return f"{f.subject}: "
    if dev is None or dev.vendor_id is None or dev.device_id is None:
        return f"{f.subject}: "
    return f"{dev.address.short} {ids.vendor_device(dev.vendor_id, dev.device_id)}: "


def doctor_text(findings: list[Finding], top: Topology, ids: PciIds) -> list[str]:
    """The checklist as rich markup lines."""
    lines: list[str] = []
    for group in GROUPS:
        mine = [f for f in findings if f.group == group]
        if not mine:
            continue
        lines.append(f"[bold]{group}[/bold]")
        for f in mine:
            who = _who(f, top, ids)
            lines.append(f"  {_MARK[f.status]} {escape(who + sentence(f))}  [dim]({escape(f.id)})[/dim]")
            if f.status != "ok":
                lines.append(f"         [dim]evidence: {escape(f.evidence)}[/dim]")
            if f.fix and f.status in ("warn", "fail"):
                lines.append(f"         fix: {escape(f.fix)}")
    lines.append(summary(findings))
    return lines


def doctor_json(findings: list[Finding]) -> dict[str, Any]:
    """Every check with id, status, subject, message, evidence and fix."""
    return {"checks": [{"id": f.id, "group": f.group, "status": f.status, "subject": f.subject or None,
                        "code": f.code, "message": sentence(f), "evidence": f.evidence, "fix": f.fix,
                        "facts": f.fact} for f in findings],
            "summary": summary(findings)}
