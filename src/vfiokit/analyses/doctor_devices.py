"""`vfiokit doctor`'s checks of each passed or named device (see analyses/doctor.py). Pure."""

from __future__ import annotations

from collections.abc import Mapping

from vfiokit.analyses.doctor_input import (
    ATI_VENDOR,
    FAIL,
    OK,
    SKIP,
    VENDOR_RESET_IDS,
    WARN,
    DoctorInput,
    Finding,
    finding,
    hostpci_options,
    log_line,
    log_source,
)
from vfiokit.analyses.passthrough import Level, judge
from vfiokit.errors import BadInput, VfiokitError
from vfiokit.formats import cmdline as cl
from vfiokit.formats import pve_hostpci, pve_mapping
from vfiokit.model import Device, PciAddress


def parse_entry(value: str) -> pve_hostpci.HostPci | None:
    try:
        return pve_hostpci.parse_hostpci(value)
    except BadInput:  # a hand-edited value: the VM check says it, the device walk skips it
        return None


def _mapped_paths(d: DoctorInput, mapping: str) -> list[str]:
    pve = d.fact("pve") or {}
    node = pve.get("node") or ""
    return pve_mapping.paths_on_node({mapping: (pve.get("mappings") or {}).get(mapping, [])}, node)[mapping]


def passed_functions(d: DoctorInput, opts: Mapping[str, str]) -> list[PciAddress]:
    """Every function a VM's hostpciN entries take on this node."""
    out: list[PciAddress] = []
    for value in hostpci_options(opts).values():
        hp = parse_entry(value)
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
        for a in passed_functions(d, opts):
            seen.setdefault(a, d.top.by_address[a])
    if d.vmid is None:
        for dev in d.top.devices:
            if dev.driver == "vfio-pci":
                seen.setdefault(dev.address, dev)
    return [seen[a] for a in sorted(seen)]


def _passed_along(d: DoctorInput, dev: Device) -> set[PciAddress]:
    if d.devices:
        return set(d.devices)
    return {a for opts in d.vms.values() if dev.address in (p := passed_functions(d, opts)) for a in p}


def device_group(d: DoctorInput) -> list[Finding]:
    """The `check` verdict (analyses/passthrough.judge): Proxmox binds the whole group to vfio-pci
    at VM start (qemu-server PCI.pm prepare_pci_device -> SysFSTools pci_dev_group_bind_to_vfio)."""
    out = []
    for dev in targets(d):
        addr = str(dev.address)
        try:
            v = judge(d.top, [dev.address])
        except VfiokitError as e:
            out.append(finding("devices.group", FAIL, "group.unjudged", str(e), subject=addr))
            continue
        members = [m for m in v.members if m.address != dev.address and m.leaves_host]
        group = ", ".join(str(g) for g in v.groups)
        others = ", ".join(m.address.short + (f" ({m.device.driver})" if m.device.driver else "")
                           for m in members) or "none"
        critical = ", ".join(m.address.short for m in members if m.critical)
        status = {Level.ALONE: OK, Level.HARMLESS: OK, Level.COSTLY: WARN, Level.UNSAFE: FAIL}[v.level]
        out.append(finding("devices.group", status, f"group.{v.level.name.lower()}",
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
            out.append(finding("devices.driver", SKIP, "unread", "driver link not read", subject=addr))
        elif dev.driver in ("vfio-pci", ""):
            out.append(finding("devices.driver", OK, "driver.free" if dev.driver == "" else "driver.vfio",
                               f"{addr}: driver {dev.driver or 'none'}", subject=addr))
        elif configured:
            out.append(finding("devices.driver", FAIL, "driver.raced", f"{addr}: driver {dev.driver}; vfio-pci "
                               f"ids in {configured}", f"softdep {dev.driver} pre: vfio-pci (in /etc/modprobe.d)",
                               subject=addr, driver=dev.driver, where=configured))
        else:
            out.append(finding("devices.driver", WARN, "driver.host", f"{addr}: driver {dev.driver}",
                               f"vfiokit bind {dev.address.short}", subject=addr, driver=dev.driver))
    return out


def _vendor_reset_family(dev: Device) -> str | None:
    if dev.vendor_id != ATI_VENDOR or dev.device_id is None:
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
            out.append(finding("devices.reset", WARN, "reset.vendor", f"{addr}: {dev.ids} (AMD {family}), "
                               f"reset_method: {' '.join(methods or ()) or 'none'}",
                               "install vendor-reset (github.com/gnif/vendor-reset), load it at boot, "
                               f"echo device_specific > /sys/bus/pci/devices/{addr}/reset_method",
                               subject=addr, family=family))
        elif methods is None:
            out.append(finding("devices.reset", SKIP, "unread", "reset_method not read", subject=addr))
        elif not methods:
            out.append(finding("devices.reset", WARN, "reset.none", f"{addr}: reset_method empty", subject=addr))
        else:
            out.append(finding("devices.reset", OK, "reset.ok", f"{addr}: reset_method {' '.join(methods)}",
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
        said = log_line(d, f"{addr}: BAR")
        if said and "can't reserve" in said:
            out.append(finding("devices.framebuffer", FAIL, "fb.reserve", f"{log_source(d)}: {said}",
                               "vfiokit boot add initcall_blacklist=sysfb_init", subject=addr))
            continue
        if ranges is None:
            out.append(finding("devices.framebuffer", SKIP, "unread", "/proc/iomem not in this source", subject=addr))
            continue
        if ranges and all(s == 0 and e == 0 for s, e, _ in ranges):
            out.append(finding("devices.framebuffer", SKIP, "iomem.zeroed", "/proc/iomem read without root: "
                               "addresses shown as 0", subject=addr))
            continue
        bars = [(s, e) for s, e, n in ranges if n == addr]
        fbs = [(s, e, n) for s, e, n in ranges if n not in (addr,) and not n[:1].isdigit()]
        hit = next(((s, e, n) for s, e, n in fbs for bs, be in bars if bs <= s and e <= be), None)
        if hit:
            out.append(finding("devices.framebuffer", FAIL, "fb.in_bar",
                               f"/proc/iomem: {hit[0]:x}-{hit[1]:x} : {hit[2]} inside {addr}'s BAR",
                               "vfiokit boot add initcall_blacklist=sysfb_init", subject=addr, fb=hit[2]))
        else:
            out.append(finding("devices.framebuffer", OK, "fb.none", f"/proc/iomem: no framebuffer in {addr}'s BARs",
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
        return [finding("devices.boot_gpu", OK if any(dv.boot_vga is not None for dv in d.top.devices) else SKIP,
                        "bootvga.none", "no device with boot_vga=1")]
    gpu = boot[0]
    addr = str(gpu.address)
    others = [dv for dv in d.top.devices if _is_display(dv) and not dv.address.same_slot(gpu.address)]
    passed = {t.address for t in targets(d)}
    if gpu.address not in passed:
        return [finding("devices.boot_gpu", OK, "bootvga.kept", f"{addr}: boot_vga=1", subject=addr)]
    if not others:
        return [finding("devices.boot_gpu", FAIL, "bootvga.only", f"{addr}: boot_vga=1, no other display device",
                        "add a second GPU or choose the other one as primary in the firmware setup", subject=addr)]
    return [finding("devices.boot_gpu", WARN, "bootvga.passed", f"{addr}: boot_vga=1; other GPU "
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
            out.append(finding("devices.gpu_audio", WARN, "audio.left", f"{left[0].address}: audio function of "
                               f"{dev.address.short} not passed",
                               f"pass the whole slot: hostpciN: {dev.address.slot_id}",
                               subject=str(dev.address), audio=left[0].address.short))
        elif audio:
            out.append(finding("devices.gpu_audio", OK, "audio.passed", f"{audio[0].address} passed along",
                               subject=str(dev.address)))
    return out


# -- VMs ---------------------------------------------------------------------------------------
