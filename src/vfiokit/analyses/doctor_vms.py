"""`vfiokit doctor`'s checks of each VM's passthrough settings (see analyses/doctor.py). Pure."""

from __future__ import annotations

from collections.abc import Mapping

from vfiokit.analyses.doctor_devices import (
    parse_entry,
    passed_functions,
)
from vfiokit.analyses.doctor_input import (
    FAIL,
    OK,
    WARN,
    DoctorInput,
    Finding,
    finding,
    hostpci_options,
)
from vfiokit.errors import BadInput
from vfiokit.formats import pve_hostpci, pve_mapping
from vfiokit.model import PciAddress


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
        keys = [k for k, v in hostpci_options(opts).items() if (hp := parse_entry(v)) and hp.flag("pcie")]
        if not keys:
            continue
        if _is_q35(opts):
            out.append(finding("vms.pcie_q35", OK, "pcie.q35", f"machine {opts.get('machine')}",
                               subject=_subject(vmid)))
        else:
            out.append(finding("vms.pcie_q35", FAIL, "pcie.i440fx", f"{', '.join(keys)}: pcie=1; machine "
                               f"{opts.get('machine', 'i440fx (default)')}", f"qm set {vmid} --machine q35",
                               subject=_subject(vmid), keys=", ".join(keys)))
    return out


def vm_primary_gpu(d: DoctorInput) -> list[Finding]:
    """x-vga=1 with SeaBIOS works only for legacy-VGA cards; OVMF needs an EFI disk to keep its
    variables (pve-docs qm-pci-passthrough.adoc, "GPU passthrough": OVMF recommended)."""
    out = []
    for vmid, opts in d.vms.items():
        keys = [k for k, v in hostpci_options(opts).items() if (hp := parse_entry(v)) and hp.flag("x-vga")]
        if not keys:
            continue
        bios = opts.get("bios", "seabios")
        if bios != "ovmf":
            out.append(finding("vms.primary_gpu", WARN, "xvga.seabios", f"{keys[0]}: x-vga=1; bios {bios}",
                               f"qm set {vmid} --bios ovmf --efidisk0 STORAGE:1,efitype=4m", subject=_subject(vmid)))
        elif "efidisk0" not in opts:
            out.append(finding("vms.primary_gpu", WARN, "xvga.no_efidisk",
                               f"{keys[0]}: x-vga=1; bios ovmf, no efidisk0",
                          f"qm set {vmid} --efidisk0 STORAGE:1,efitype=4m", subject=_subject(vmid)))
        else:
            out.append(finding("vms.primary_gpu", OK, "xvga.ovmf", "bios ovmf with efidisk0", subject=_subject(vmid)))
    return out


def vm_balloon(d: DoctorInput) -> list[Finding]:
    """A passed device can DMA anywhere in guest RAM, so QEMU pins all of it (vfio type1
    vfio_pin_pages_remote): the balloon cannot give memory back (pve-docs qm.adoc, ballooning)."""
    out = []
    for vmid, opts in d.vms.items():
        if not hostpci_options(opts):
            continue
        if opts.get("balloon") == "0":
            out.append(finding("vms.balloon", OK, "balloon.off", "balloon: 0", subject=_subject(vmid)))
        else:
            out.append(finding("vms.balloon", WARN, "balloon.on", f"balloon: {opts.get('balloon', 'not set (on)')}",
                               f"qm set {vmid} --balloon 0", subject=_subject(vmid)))
    return out


def vm_shared(d: DoctorInput) -> list[Finding]:
    """Two VMs holding the same device or mapping: the second one to start fails (qemu-server
    PCI.pm reserve_pci_usage: "PCI device '...' already in use by VMID ..."); with both on boot,
    one of them never comes up."""
    allvms = (d.fact("pve") or {}).get("vms") or {}
    out = []
    for vmid, opts in d.vms.items():
        mine = set(passed_functions(d, opts))
        maps = {hp.mapping for v in hostpci_options(opts).values() if (hp := parse_entry(v)) and hp.mapping}
        for other, oopts in sorted(allvms.items()):
            if other == vmid or oopts.get("onboot") != "1":
                continue
            omaps = {hp.mapping for v in hostpci_options(oopts).values() if (hp := parse_entry(v)) and hp.mapping}
            shared = sorted(mine & set(passed_functions(d, oopts)))
            what = ", ".join([*(a.short for a in shared), *(f"mapping {m}" for m in sorted(maps & omaps))])
            if what:
                both = opts.get("onboot") == "1"
                out.append(finding("vms.shared", FAIL if both else WARN, "shared.onboot" if both else "shared.other",
                                   f"VM {other} (onboot: 1) also takes {what}",
                                   f"qm set {other if both else vmid} --onboot 0, or give each VM its own device",
                                   subject=_subject(vmid), other=other, what=what))
        if hostpci_options(opts) and not any(f.subject == _subject(vmid) for f in out):
            out.append(finding("vms.shared", OK, "shared.none", "no on-boot VM takes the same device",
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
        for key, value in sorted(hostpci_options(opts).items()):
            hp = parse_entry(value)
            subject = _subject(vmid)
            if hp is None:
                out.append(finding("vms.devices", FAIL, "hostpci.bad", f"{key}: {value}", subject=subject, key=key))
                continue
            for hid in hp.host:
                if not any(pve_hostpci.covers(hid, str(dv.address)) for dv in d.top.devices):
                    out.append(finding("vms.devices", FAIL, "hostpci.gone", f"{key}: {hid}", subject=subject,
                                       key=key, id=hid))
            if hp.mapping:
                entries = [pve_mapping.parse_map_entry(e) for e in (pve.get("mappings") or {}).get(hp.mapping, [])]
                mine = [e for e in entries if e.get("node") == node]
                if not mine:
                    out.append(finding("vms.devices", FAIL, "mapping.no_node", f"{key}: mapping={hp.mapping}; "
                                       f"/etc/pve/mapping/pci.cfg has no entry for node {node}", subject=subject,
                                       mapping=hp.mapping, node=node))
                for e in mine:
                    out += _mapping_entry(d, subject, key, hp.mapping, e)
        if hostpci_options(opts) and not any(f.subject == _subject(vmid) for f in out):
            out.append(finding("vms.devices", OK, "hostpci.found", "every hostpci resolves on this node",
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
        return [finding("vms.devices", FAIL, "mapping.gone", f"{where}: no such device", subject=subject,
                        mapping=mapping, path=path)]
    wrong = []
    if e.get("id") and dev.ids and e["id"].lower() != dev.ids:
        wrong.append(f"id {e['id']} != {dev.ids}")
    if e.get("iommugroup") and dev.iommu_group is not None and e["iommugroup"] != str(dev.iommu_group):
        wrong.append(f"iommugroup {e['iommugroup']} != {dev.iommu_group}")
    if wrong:
        return [finding("vms.devices", FAIL, "mapping.mismatch", f"{where}: {'; '.join(wrong)}",
                        "update the mapping in Datacenter > Resource Mappings", subject=subject, mapping=mapping,
                        wrong="; ".join(wrong))]
    return []
