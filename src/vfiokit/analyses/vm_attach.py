"""The VM side of giving a device to a Proxmox VM: which `hostpciN`, which value, and what refuses.

Pure: configs and the topology come in, a plan (the exact config change and what to say about it)
comes out. The rules are qemu-server's (PVE/QemuServer/PCI.pm parse_hostpci_devices and
print_hostpci_devices) and the advice is pve-docs qm-pci-passthrough.adoc's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from vfiokit.errors import BadInput, DeviceNotFound, Refused
from vfiokit.formats import pve_config as pc
from vfiokit.formats import pve_hostpci as hostpci
from vfiokit.model import PciAddress, Topology


@dataclass(frozen=True)
class AttachRequest:
    vmid: str
    #: The function named on the command line (None when attaching a mapping).
    device: PciAddress | None = None
    mapping: str | None = None
    pcie: bool = False
    primary_gpu: bool = False
    all_functions: bool = False
    rombar: bool | None = None
    romfile: str | None = None
    #: Proceed although another VM already has the device.
    force: bool = False


@dataclass
class AttachPlan:
    vmid: str
    key: str
    #: The new value, or None for a deletion.
    value: str | None
    old_text: str
    new_text: str
    #: The change waits under [PENDING] for the VM's next start.
    pending: bool
    #: Addresses (DDDD:BB:DD.F) the entry takes from the host.
    functions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def diff(self, name: str) -> str:
        return pc.config_diff(self.old_text, self.new_text, name)


def _functions(top: Topology | None, dev: PciAddress, all_functions: bool) -> list[PciAddress]:
    if top is None:
        return [dev]
    top.device(dev)  # DeviceNotFound names the address and the source
    if not all_functions:
        return [dev]
    return sorted(d.address for d in top.devices if d.address.same_slot(dev))


def _is_display(top: Topology | None, addr: PciAddress) -> bool | None:
    if top is None:
        return None
    base = top.device(addr).base_class
    return None if base is None else base == 0x03


def _stopped_base(conf: pc.VmConfig, vmid: str, notes: list[str]) -> pc.VmConfig:
    """What `qm set` edits on a stopped VM: the config with its `[PENDING]` applied (qemu-server
    update_vm_api -> vmconfig_apply_pending applies every pending change, not only the new one)."""
    pend = conf.section(pc.PENDING)
    if pend is None:
        return conf
    what = [f"{k}: {v}" for k, v in pend.values.items() if k != "delete"]
    what += [f"delete {k}" for k in sorted(conf.pending_deletes)]
    if what:
        notes.append(f"VM {vmid} is stopped and has pending changes ({'; '.join(what)}): Proxmox "
                     "applies them all with this change, as the diff shows")
    return pc.parse_config(pc.apply_pending(conf), strict=False)


def _running_pending(conf: pc.VmConfig, vmid: str, notes: list[str]) -> pc.VmConfig:
    """A running VM's config, with a note when it has other pending changes: `qm set` ends with
    qemu-server vmconfig_hotplug_pending, which hot-plugs those it can (per the VM's `hotplug`)."""
    others = sorted(k for k in conf.pending if not k.startswith("hostpci") and k != "delete")
    others += sorted(k for k in conf.pending_deletes if not k.startswith("hostpci"))
    if others:
        notes.append(f"VM {vmid} is running and has other pending changes ({', '.join(others)}): Proxmox "
                     "tries to hot-plug them with this change; those it cannot stay pending")
    return conf


def _as_mdev(hp: hostpci.HostPci) -> str:
    """What to add when an entry holding a device is a mediated device: qemu-server
    choose_hostpci_devices neither counts nor reserves an `mdev` entry's device (NVIDIA vGPU aside),
    so Proxmox itself would not stop the clash; passing the whole card still takes it from them.
    `nvidia-N` on a card with the newer NVIDIA driver is a vGPU that qemu-server does reserve
    (parse_hostpci turns it into `nvidia`): no such remark for it."""
    mdev = hp.option("mdev")
    if mdev is None or re.fullmatch(r"nvidia-\d+", mdev):
        return ""
    return (f" as a mediated device (mdev={hp.option('mdev')}): Proxmox reserves nothing for it and would not "
            "stop this, but binding the card to vfio-pci takes it from the driver its mediated devices need")


def _at_next_start(conf: pc.VmConfig, where: str) -> dict[str, hostpci.HostPci]:
    """The VM's `hostpciN` entries when a change made now takes effect (its next start, for a
    running VM): an entry pending deletion is gone by then."""
    return {k: hp for k, hp in conf.hostpci(f"{where}: ").items() if k not in conf.pending_deletes}


def _mapping_functions(req: AttachRequest, top: Topology | None,
                       mapping_paths: Mapping[str, list[str]]) -> list[str]:
    """The host functions mapping `req.mapping` gives on this node (its first alternative)."""
    functions = []
    for path in mapping_paths[req.mapping][:1]:  # the first alternative is the one judged
        for part in path.split(";"):
            if top is None or "." in part:
                functions.append(hostpci.host_functions(part))
            else:  # a whole slot: every function of it on this node
                functions += [str(d.address) for d in top.devices if hostpci.covers(part, str(d.address))]
    return functions


def _device_functions(req: AttachRequest, top: Topology | None,
                      notes: list[str]) -> tuple[list[str], dict[str, object]]:
    """The functions `req.device` gives (with --all-functions, its slot) and the hostpci `host` target;
    notes a slot sibling in the same group that Proxmox takes too."""
    assert req.device is not None
    addrs = _functions(top, req.device, req.all_functions)
    functions = [str(a) for a in addrs]
    target = {"host": [req.device.slot_id if req.all_functions else str(req.device)]}
    if top is not None and not req.all_functions:
        siblings = [d for d in top.devices if d.address.same_slot(req.device) and d.address != req.device
                    and d.iommu_group is not None and d.iommu_group == top.device(req.device).iommu_group]
        if siblings:
            notes.append(f"{', '.join(str(d.address) for d in siblings)} "
                         f"{'shares' if len(siblings) == 1 else 'share'} the slot and the IOMMU group: "
                         "Proxmox binds it to vfio-pci too; --all-functions gives it to the VM as well")
    return functions, target


def _check_twice_in_vm(req: AttachRequest, conf: pc.VmConfig, where: str, functions: list[str],
                       mapping_paths: Mapping[str, list[str]]) -> None:
    """Refuse a device (or mapping) this VM already has."""
    # the device twice in this VM: qemu-server choose_hostpci_devices dies at VM start. A mapping
    # is taken once per device it has on this node (each entry gets the first alternative left).
    current = _at_next_start(conf, where)
    own = [k for k, hp in current.items() if req.mapping is not None and hp.mapping == req.mapping]
    if own and len(own) >= len(mapping_paths[req.mapping or ""]):
        raise Refused(f"mapping '{req.mapping}' assigned more than once ({where} {', '.join(own)})")
    for key, hp in current.items():
        if key in own:
            continue
        ids = list(hp.host) if hp.mapping is None else [
            p for path in mapping_paths.get(hp.mapping, []) for p in path.split(";")]
        for f in functions:
            if any(hostpci.covers(i, f) for i in ids):
                if _as_mdev(hp):
                    raise Refused(f"{where} already uses {f} ({key}: {hp.render()}){_as_mdev(hp)}")
                raise Refused(f"device '{f}' assigned more than once ({where} already has "
                              f"{key}: {hp.render()})")


def _check_other_vms(req: AttachRequest, others: Mapping[str, pc.VmConfig], functions: list[str],
                     mapping_paths: Mapping[str, list[str]], notes: list[str]) -> None:
    """Refuse (or, with --force, note) a device another VM has; a mapping with spare devices is shared."""
    # another VM that has it: only one of them can start (pci-id-reservations), the other fails.
    rest = {k: v for k, v in others.items() if k != req.vmid}
    sharing: set[str] = set()
    if req.mapping is not None:
        # A mapping's entries for one node are alternatives: at VM start qemu-server takes the
        # first one no running VM holds (PCI.pm choose_hostpci_devices). As many VMs as it has
        # devices here can use it at once.
        sharing = {vmid for vmid, conf_ in rest.items()
                   if any(hp.mapping == req.mapping for hp in conf_.hostpci(f"VM {vmid}: ").values())}
        alternatives = len(mapping_paths[req.mapping])
        if sharing and len(sharing) < alternatives:
            notes.append(f"mapping '{req.mapping}' has {alternatives} devices on this node and "
                         f"{', '.join('VM ' + v for v in sorted(sharing, key=int))} "
                         f"{'uses' if len(sharing) == 1 else 'use'} it too: each VM gets the first one "
                         "free when it starts")
        else:
            sharing = set()
    for f in functions:
        for vmid, key, value in pc.users_of(rest, f, mapping_paths):
            if vmid in sharing and hostpci.parse_hostpci(value).mapping == req.mapping:
                continue
            msg = f"{f} is already given to VM {vmid} ({key}: {value})" + _as_mdev(hostpci.parse_hostpci(value))
            if key in rest[vmid].pending_deletes:
                # detached there while it runs: the entry goes at that VM's next start
                msg += f"; VM {vmid}, if it runs, holds it until its next start (its deletion is pending)"
                hint = (f"stop VM {vmid} first (or restart it), or --force if the two VMs never run at the same "
                        "time")
            else:
                hint = "detach it there first ('vfiokit detach'), or --force if the two VMs never run at the same time"
            if not req.force:
                raise Refused(msg, hint=hint)
            notes.append(msg + "; only one of the two VMs can run at a time")


def _options(req: AttachRequest, conf: pc.VmConfig, top: Topology | None, where: str,
             notes: list[str]) -> dict[str, object]:
    """The hostpci options: pcie (needs q35), x-vga (one primary GPU, with its firmware notes), ROM."""
    options: dict[str, object] = {}
    if req.pcie:
        # parse_hostpci_devices: die "q35 machine model is not enabled" if !$q35 && $d->{pcie}
        if not conf.is_q35():
            raise Refused(f"{where}: q35 machine model is not enabled (--pcie needs it)",
                          hint=f"'qm set {req.vmid} --machine q35' first (the guest sees new hardware)")
        options["pcie"] = True
    if req.primary_gpu:
        if req.device is not None and _is_display(top, req.device) is False:
            raise BadInput(f"--primary-gpu: {req.device} is not a display controller "
                           f"(class {top.device(req.device).class_id:04x})")  # type: ignore[union-attr]
        for key, hp in _at_next_start(conf, where).items():
            if hp.flag("x-vga"):
                raise Refused(f"{where} already has a primary GPU ({key}: {hp.render()})",
                              hint="a VM has one primary VGA device; detach the other one first")
        options["x_vga"] = True
        # print_hostpci_devices: x-vga=on reaches QEMU only without OVMF; with x-vga the vga
        # option is ignored (pve-docs). pve-docs: OVMF needs a UEFI-capable ROM (GOP).
        if conf.bios() == "ovmf":
            notes.append("OVMF: the GPU needs a UEFI-capable ROM (GOP), otherwise the VM shows nothing; "
                         "use SeaBIOS for a card without one")
        else:
            notes.append("SeaBIOS: the card's legacy VGA ROM runs at boot; pve-docs advise q35 + OVMF + "
                         "pcie for GPUs whose ROM is UEFI-capable")
        if not req.pcie:
            notes.append("a GPU usually works best as PCIe (--pcie, q35 machine)")
        if conf.effective("vga") not in (None, "none"):
            notes.append(f"the VM's 'vga: {conf.effective('vga')}' is ignored while a primary GPU is set")
    if req.rombar is not None:
        options["rombar"] = req.rombar
    if req.romfile is not None:
        options["romfile"] = hostpci.check_romfile(req.romfile, "--romfile")
    return options


def plan_attach(req: AttachRequest, conf: pc.VmConfig, running: bool, top: Topology | None,
                others: Mapping[str, pc.VmConfig], mapping_paths: Mapping[str, list[str]]) -> AttachPlan:
    """The `hostpciN` line for `req` in VM `req.vmid`, after every VM-side check.

    `others` are the other VMs' configs on the same node, `mapping_paths` the paths each cluster
    mapping has on that node; `top` the node's devices (None when unknown: no device checks).
    """
    notes: list[str] = []
    where = f"VM {req.vmid}"
    original = conf.text
    # What the change is made on: a stopped VM's pending changes apply with it (_stopped_base), so
    # the checks and the free index are those of the config Proxmox will hold.
    conf = _running_pending(conf, req.vmid, notes) if running else _stopped_base(conf, req.vmid, notes)
    if req.mapping is not None:
        if not hostpci.CONFIGID_RE.match(req.mapping):
            raise BadInput(f"--mapping: invalid configuration ID '{req.mapping}'")
        if req.mapping not in mapping_paths:
            raise DeviceNotFound(f"no cluster PCI mapping '{req.mapping}'",
                                 hint="'vfiokit cluster map NAME DEVICE@NODE' creates one")
        if not mapping_paths[req.mapping]:
            # qemu-server parse_hostpci: find_on_current_node finds nothing and the VM fails to start.
            raise DeviceNotFound(f"mapping '{req.mapping}' has no device on this node (Proxmox would fail "
                                 f"at VM start: PCI device mapping not found for '{req.mapping}')",
                                 hint=f"'vfiokit cluster map {req.mapping} DEVICE@NODE' adds this node")
        functions = _mapping_functions(req, top, mapping_paths)
        target = {"mapping": req.mapping}
    else:
        functions, target = _device_functions(req, top, notes)
    _check_twice_in_vm(req, conf, where, functions, mapping_paths)
    _check_other_vms(req, others, functions, mapping_paths, notes)

    options = _options(req, conf, top, where, notes)
    value = hostpci.make_hostpci(**target, **options).render()  # type: ignore[arg-type]
    try:
        key = pc.first_free_index(conf)
    except BadInput:
        raise Refused(f"{where}: all {hostpci.MAX_HOSTPCI} hostpci slots (hostpci0..hostpci{hostpci.MAX_HOSTPCI - 1}) "
                      "are used", hint=f"free one first ('vfiokit detach {req.vmid} hostpciN')") from None
    new = pc.set_option(conf, key, value, running=running)
    if running:
        notes.append(f"VM {req.vmid} is running: hostpci is not hot-pluggable, the change waits under "
                     "[PENDING] and applies at the next start (a reboot from inside the guest is not enough)")
    return AttachPlan(req.vmid, key, value, original, new, running, functions, notes)


def plan_detach(vmid: str, conf: pc.VmConfig, running: bool, device: PciAddress | None,
                key: str | None, mapping: str | None,
                mapping_paths: Mapping[str, list[str]], whole_slot: bool = False) -> AttachPlan:
    """Remove the `hostpciN` entries that take `device` (with `whole_slot`, any function of its
    slot, as `01:00` names the whole card), or the one named `key`, or those using `mapping`."""
    entries = conf.hostpci(f"VM {vmid}: ")

    def takes(host_id: str) -> bool:
        assert device is not None
        if whole_slot:
            return hostpci.host_functions(host_id.lower()).split(".")[0] == device.slot_id
        return hostpci.covers(host_id, str(device))
    if key is not None:
        if key not in entries:
            raise DeviceNotFound(f"VM {vmid} has no {key}")
        keys = [key]
    elif mapping is not None:
        keys = [k for k, hp in entries.items() if hp.mapping == mapping]
    else:
        assert device is not None
        keys = [k for k, hp in entries.items()
                if any(takes(i) for i in (list(hp.host) or [
                    p for path in mapping_paths.get(hp.mapping or "", []) for p in path.split(";")]))]
    if not keys:
        what = f"mapping '{mapping}'" if mapping is not None else (
            device.slot_id if whole_slot and device is not None else str(device))
        raise DeviceNotFound(f"VM {vmid} has no hostpci entry for {what}")
    notes: list[str] = []
    if running and all(k in conf.pending_deletes for k in keys):
        # Already waiting for the next start: `qm set --delete` again would change nothing.
        return AttachPlan(vmid, ",".join(keys), None, conf.text, conf.text, True, [],
                    [f"{', '.join(keys)} already pending deletion: the device goes at the next start"])
    if running:
        keys = [k for k in keys if k not in conf.pending_deletes]
    text = _running_pending(conf, vmid, notes).text if running else _stopped_base(conf, vmid, notes).text
    for k in keys:
        text = pc.delete_option(pc.parse_config(text), k, running=running)
        hp = entries[k]
        if device is not None and len(hp.host) > 1:
            notes.append(f"{k} also names {', '.join(h for h in hp.host if not takes(h))}: "
                         "the whole entry goes")
    if running:
        notes.append(f"VM {vmid} is running: the device stays until the next start ([PENDING] delete)")
    return AttachPlan(vmid, ",".join(keys), None, conf.text, text, running, [], notes)
