"""The live host: read `/sys`, `/proc` and `/etc` below a root folder into the model
(`read_topology`) or into a raw capture (`capture`, what a snapshot holds), with the same walk.

`root` is `/` on a real host; tests and `--root` point it at a folder holding the same layout.
Symlinks inside the tree are resolved inside `root` (an absolute link target `/sys/...` is taken
as `<root>/sys/...`), so a captured tree can be read anywhere.

The folders are read by `sysfs_walk` (its doc says the cost per function); `sysfs_around` reads
only the part of the host that a verdict on a few devices looks at. No pci.ids lookups here
(names are the renderer's business).
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Container, Iterable
from typing import Any

from vfiokit import __version__, rootfs
from vfiokit.errors import BadInput
from vfiokit.gc_pause import gc_paused
from vfiokit.model import Device, HostInfo, PciAddress, Topology
from vfiokit.sources import capture as cap
from vfiokit.sources import host_usage
from vfiokit.sources import sysfs_walk as walk


def _cpu(root: str) -> tuple[str | None, list[str] | None]:
    text = rootfs.attr_under(root, "/proc/cpuinfo", cap=rootfs.FILE_CAP)
    if text is None:
        return None, None
    vendor = flags = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and vendor is None:
            vendor = value.strip()
        elif key == "flags" and flags is None:
            flags = sorted(set(value.split()) & {"vmx", "svm", "hypervisor"})
        if vendor and flags is not None:
            break
    return vendor, flags


#: Kernel log lines worth keeping: the ACS override patch's warning, a stock kernel's "Unknown
#: kernel command line parameters" line, IOMMU, interrupt remapping (DMAR-IR, AMD-Vi) and ACS quirk
#: messages, vfio's and a BAR that could not be reserved (what `doctor` reads), and the boot's
#: first line ("Linux version"), which says the log reaches back to the boot.
_LOG_KEEP = re.compile(
    r"ACS overrides enabled|Unknown kernel command line parameters|pcie_acs_override|"
    r"DMAR: IOMMU enabled|DMAR: Intel\(R\) Virtualization|AMD-Vi: |iommu: Default domain type|"
    r"Intel PCH root port ACS workaround|Failed to enable Intel PCH ACS quirk|ACS redirect|"
    r"DMAR-IR: |IRQ remapping|Interrupt remapping|vfio|can't reserve|Linux version \d"
)
#: Reading a kern.log that holds many boots: only its tail matters (the last boot).
_LOG_TAIL_BYTES = 4 << 20
#: The running kernel's log: its ring buffer first; journald's copy of this boot when the ring
#: buffer no longer reaches back to the boot messages (a long-running host) or is not readable.
_LIVE_LOGS = (("dmesg",), ("journalctl", "-k", "-b", "-o", "cat", "--no-pager", "-q"))


def _tail(root: str, path: str) -> str | None:
    try:
        return rootfs.read_tail(rootfs.resolve_under(root, path), _LOG_TAIL_BYTES).decode("utf-8", "replace")
    except (OSError, BadInput):
        return None


def _kernel_log(root: str) -> tuple[list[str] | None, str | None]:
    """The relevant lines of the current boot's kernel log, and which log they came from: on the
    host itself `dmesg` or `journalctl -k -b` (either may need root), else `/var/log/dmesg` or
    `/var/log/kern.log` below `root`; (None, None) when none can be read. Never /dev/kmsg: a read
    there waits for the next message, and it belongs to the running system only."""
    text = used = None
    if os.path.abspath(root) == "/":
        import subprocess  # the live host's only: a --root tree never runs a command

        for cmd in _LIVE_LOGS:
            try:
                done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=5, check=False)
            except (OSError, subprocess.SubprocessError):
                continue
            if done.returncode == 0 and done.stdout:
                text, used = done.stdout, " ".join(cmd[:3] if cmd[0] == "journalctl" else cmd)
                if "Linux version" in text:
                    break
    for name in ("var/log/dmesg", "var/log/kern.log"):
        if text is not None:
            break
        text = _tail(root, name)
        if text is not None:
            used = f"/{name}"
            # A kern.log holds several boots; keep the last one (it starts with "Linux version").
            last = text.rfind("Linux version")
            text = text[text.rfind("\n", 0, last) + 1:] if last >= 0 else text
    if text is None:
        return None, None
    return [line.strip() for line in text.splitlines() if _LOG_KEEP.search(line)][:400], used


def _host(root: str) -> dict[str, Any]:
    vendor, flags = _cpu(root)
    try:
        units = sorted(os.listdir(os.path.join(root, "sys/class/iommu")))
    except OSError:
        units = None
    dmi = "/sys/devices/virtual/dmi/id"
    board = " ".join(filter(None, (rootfs.attr_under(root, f"{dmi}/{k}") for k in ("board_vendor", "board_name"))))
    hostname = rootfs.read_hostname(root)
    log, log_source = _kernel_log(root)
    return {
        "kernel_release": rootfs.attr_under(root, "/proc/sys/kernel/osrelease"),
        "cmdline": rootfs.attr_under(root, "/proc/cmdline"),
        "cpu_vendor": vendor,
        "cpu_flags": flags,
        "iommu_units": units,
        "hostname": hostname,
        "board": board or None,
        "dmesg": log,
        "dmesg_source": log_source,
    }


def read_host(root: str | os.PathLike[str] = "/") -> HostInfo:
    """Only the facts about the machine (kernel, command line, CPU, IOMMU units), no PCI tree."""
    raw = _host(os.path.abspath(root))
    return HostInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def _note_left_out(root: str, names: list[str], read: Container[str], notes: list[str]) -> None:
    """/sys/bus/pci/devices links every function into the tree walked; a name there that the walk
    did not meet is a dangling link or points elsewhere."""
    buspci = os.path.join(root, "sys/bus/pci/devices")
    sysdevices = os.path.join(root, "sys/devices")
    for name in names:
        if name not in read:
            link = os.path.join(buspci, name)
            try:
                target = rootfs.resolve_under(root, f"/sys/bus/pci/devices/{name}")
            except BadInput:
                target = link
            why = "which does not exist" if not os.path.isdir(target) else f"outside {sysdevices}"
            notes.append(f"{name}: {link} points to {target}, {why}; device left out")


def _entry(f: walk.FunctionFolder) -> dict[str, Any]:
    config = cap.pack_config(f.config) if f.config is not None else {"config": None, "config_size": None}
    return {"path": f.path, "attrs": f.attrs, "links": f.links, "files": f.files, **config}


def capture(root: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """Read everything vfiokit reads of the host below `root` into a raw capture (see `capture.py`
    for its layout): what a snapshot holds."""
    # What only `doctor` reads (module lists, vfio ids, ...), imported for a capture only.
    from vfiokit.sources import doctor_facts

    root = os.path.abspath(root)
    names = walk.bus_functions(root)
    notes: list[str] = []
    devices = {f.name: _entry(f) for f in walk.functions(root, os.path.join(root, "sys/devices"), notes)}
    _note_left_out(root, names, devices, notes)
    devices = {name: devices[name] for name in sorted(devices)}
    try:
        import getpass  # a snapshot's only: not imported to read a topology

        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.geteuid())
    return {
        "format": cap.FORMAT,
        "version": cap.VERSION,
        "captured": {
            "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "by": user,
            "as_root": os.geteuid() == 0,
            "vfiokit": __version__,
            "root": root,
        },
        "host": _host(root),
        "iommu_groups": walk.read_groups(root),
        "devices": devices,
        "read_notes": notes,
        "host_usage": host_usage.gather(root),
        "doctor": doctor_facts.gather(root),
    }


def read_topology(root: str | os.PathLike[str] = "/", *, reset_methods: bool = True,
                  drivers: bool = True, capabilities: bool = True) -> Topology:
    """Read the host below `root` into the model: the Topology of its `capture` (`build_topology`),
    without the capture. Each function is modelled as soon as its folder is read, so its config
    space is dropped at once; what only `doctor` reads is not read. `reset_methods=False` reads no
    `reset_method` file (each Device's `reset_methods` stays None, unknown): for a command that
    judges no reset (`groups`), one file fewer per function. `drivers=False` reads no `driver`
    link (each `driver` stays None): for a command that shows and judges no driver (`simulate`
    without --device), one readlink fewer per function. `capabilities=False` reads only each
    function's 64-byte config header (its PCIe type and ACS stay unknown, as for a reader that is
    not root, but no note says so): for a command that shows neither (`groups`), 16 accesses to
    each device instead of 1,024 (`sysfs_walk.HEADER`)."""
    # The read allocates some ten containers per function and makes no reference cycle: those it
    # drops are freed by their count, the rest live on in the model. The cycle collector's passes
    # over them free nothing and cost 5% of the read at 10,000 functions.
    wanted = cap.ATTRS if reset_methods else cap.NO_RESET_ATTRS
    with gc_paused():
        return _read_topology(root, wanted, drivers, capabilities)


def with_reset_methods(top: Topology, root: str | os.PathLike[str], addresses: Iterable[PciAddress]) -> Topology:
    """`top`, read below `root` with `reset_methods=False`, with the reset facts of the devices at
    `addresses` read from their sysfs folders (their `reset_method` file, and whether a `reset`
    file is there): a command that judges the reset of a few devices (`check`, its targets) reads
    a file or two per device judged instead of listing every function's folder."""
    from dataclasses import replace

    root = os.path.abspath(root)
    read = {}
    for a in addresses:
        dev = top.by_address.get(a)
        if dev is not None and dev.sysfs_path is not None:
            folder = f"/sys/devices/{dev.sysfs_path}"
            text = rootfs.attr_under(root, f"{folder}/reset_method")
            try:
                has_reset = os.path.lexists(rootfs.resolve_under(root, f"{folder}/reset"))
            except BadInput:
                has_reset = None
            read[a] = dev._replace(reset_methods=None if text is None else tuple(text.split()), has_reset=has_reset)
    if not read:
        return top
    return replace(top, devices=tuple(read.get(d.address, d) for d in top.devices))


def _read_topology(root: str | os.PathLike[str], wanted: tuple[str, ...], drivers: bool,
                   capabilities: bool) -> Topology:
    origin = source_name(root)
    root = os.path.abspath(root)
    names = walk.bus_functions(root)
    groups = cap.Groups(walk.read_groups(root), origin)
    notes: list[str] = []
    # Without reset methods, nothing needs the presence-only files: endpoints are not listed.
    folders = walk.functions(root, os.path.join(root, "sys/devices"), notes, wanted,
                             list_endpoints="reset_method" in wanted,
                             links_wanted=cap.LINKS if drivers else cap.NO_DRIVER_LINKS,
                             config_bytes=walk.CONFIG_SPACE if capabilities else walk.HEADER)
    modelled = model_functions(folders, groups, origin, drivers=drivers)
    _note_left_out(root, names, modelled, notes)
    return assemble(root, origin, modelled, groups, notes, capabilities=capabilities)


def source_name(root: str | os.PathLike[str]) -> str:
    """How a topology read below `root` names its source: "live host", or "tree PATH"."""
    return "live host" if os.path.abspath(root) == "/" else f"tree {os.path.normpath(root)}"


def model_functions(folders: Iterable[walk.FunctionFolder], groups: cap.Groups, origin: str, *,
                    drivers: bool = True) -> dict[str, Device | BadInput]:
    """Model each function read, by name; `folders` come parents first (a function's `parent` is
    an address already met), their `driver` links read unless `drivers` is False. A function that
    cannot be modelled is kept as its error, which `assemble` raises once the groups have said
    theirs."""
    addresses: dict[str, PciAddress] = {}
    modelled: dict[str, Device | BadInput] = {}
    known, group_of, model_device = groups.address_of, groups.group_of, cap.model_device
    for name, path, parent, attrs, links, files, config in folders:  # (run once per function)
        try:
            addr = addresses[name] = known.get(name) or cap.parse_key(name, origin)
            modelled[name] = model_device(
                addr, origin, path=path, parent=addresses.get(parent) if parent else None,
                attrs=attrs, links=links, files=files, cfg=config, group=group_of.get(addr), known=known,
                drivers=drivers)
        except BadInput as e:
            modelled[name] = e
    return modelled


def assemble(root: str, origin: str, modelled: dict[str, Device | BadInput], groups: cap.Groups,
             notes: list[str], *, capabilities: bool = True) -> Topology:
    """The Topology of the functions `model_functions` modelled and the groups read, with the host
    facts below `root`; the error of the first function by name that could not be modelled (as
    `build_topology` meets them in a sorted capture), after the groups' own. `capabilities`
    False: config space was read to its header on purpose (no note about the rest)."""
    checked, group_notes = groups.check(modelled)
    devices: dict[PciAddress, Device] = {}
    for name in sorted(modelled):
        device = modelled[name]
        if isinstance(device, BadInput):
            raise device
        devices[device.address] = device
    return cap.topology(devices, checked, [*notes, *group_notes], host=cap.host_info(_host(root)), origin=origin,
                        as_root=os.geteuid() == 0, host_usage=host_usage.gather(root), capabilities=capabilities)
