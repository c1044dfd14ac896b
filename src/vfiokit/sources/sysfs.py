"""The live host: read `/sys`, `/proc` and `/etc` below a root folder into the model
(`read_topology`) or into a raw capture (`capture`, what a snapshot holds), with the same walk.

`root` is `/` on a real host; tests and `--root` point it at a folder holding the same layout.
Symlinks inside the tree are resolved inside `root` (an absolute link target `/sys/...` is taken
as `<root>/sys/...`), so a captured tree can be read anywhere.

Cost per PCI function: its folder opened and listed once (`scandir`, file types included), then
`config` and a few attributes opened relative to it (open, read, close) and two `readlink`s; each
group folder is listed once. No pci.ids lookups here (names are the renderer's business).
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Container, Iterable, Iterator
from typing import Any, NamedTuple

from vfiokit import __version__, rootfs
from vfiokit.errors import BadInput
from vfiokit.gc_pause import gc_paused
from vfiokit.model import Device, HostInfo, PciAddress, Topology
from vfiokit.sources import capture as cap
from vfiokit.sources import host_usage

#: How the walk opens a folder: O_DIRECTORY refuses a FIFO or file named like a function before
#: any open of it; the folder's files are then opened relative to it (no path walked again).
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK | os.O_CLOEXEC


class FunctionFolder(NamedTuple):
    """What the walk read in one PCI function's folder below /sys/devices."""

    #: The folder's name, the function's address as the kernel writes it ("0000:01:00.0").
    name: str
    #: The folder below /sys/devices ("pci0000:00/0000:00:01.1/0000:01:00.0").
    path: str
    #: The name of the function folder it sits in (its bridge); None on a root bus.
    parent: str | None
    attrs: dict[str, str]
    #: basenames of the targets of `cap.LINKS`
    links: dict[str, str]
    #: which of `cap.FILES` are there
    files: list[str]
    #: config space as read; None when it could not be (said in the notes)
    config: bytes | None


def _read_config(folder: str, dir_fd: int, entry: os.DirEntry[str], notes: list[str], addr: str) -> bytes | None:
    try:
        return rootfs.read_listed(folder, dir_fd, entry, 4096)
    except PermissionError:
        notes.append(f"{addr}: config space not readable (permission denied)")
    except OSError as e:
        notes.append(f"{addr}: config space not readable ({e.strerror})")
    except BadInput as e:
        notes.append(f"{addr}: config space not read ({e})")
    return None


def _read_attr(folder: str, dir_fd: int, entry: os.DirEntry[str]) -> str | None:
    """`rootfs.read_attr` of an entry of the open folder."""
    try:
        return rootfs.read_listed(folder, dir_fd, entry, rootfs.ATTR_CAP).decode("utf-8", "replace").strip()
    except (OSError, BadInput):
        return None


def _read_function(folder: str, dir_fd: int, entries: dict[str, os.DirEntry[str]], rel: str, name: str,
                   parent: str | None, notes: list[str], wanted: tuple[str, ...]) -> FunctionFolder:
    """Read the function whose folder `folder` is open as `dir_fd` and listed as `entries`, and of
    its attributes those `wanted` (a part of `cap.ATTRS`)."""
    entry = entries.get("config")
    config = _read_config(folder, dir_fd, entry, notes, name) if entry is not None else None
    if entry is None:
        notes.append(f"{name}: no config file in {folder}")
    # The ids, class and revision are the first 64 bytes of config space, which anyone may read;
    # their sysfs attributes are read only when that failed.
    ids_from_attrs = config is None or len(config) < 64
    if ids_from_attrs:
        wanted += cap.ID_ATTRS
    attrs = {}
    for attr in wanted:
        entry = entries.get(attr)
        if entry is not None:
            value = _read_attr(folder, dir_fd, entry)
            if value is not None:
                attrs[attr] = value
    if ids_from_attrs:
        for required in ("vendor", "device", "class"):
            if required not in attrs:
                notes.append(f"{name}: sysfs attribute '{required}' missing in {folder}")
    links = {}
    for link in cap.LINKS:
        if link in entries:
            try:
                target = os.readlink(link, dir_fd=dir_fd)
            except OSError:  # not a link: no target to keep
                continue
            links[link] = target.rpartition("/")[2]  # its basename
    return FunctionFolder(name, rel, parent, attrs, links, [f for f in cap.FILES if f in entries], config)


def _is_address(name: str) -> bool:
    return len(name) == 12 and name[4] == ":" and name[7] == ":" and name[10] == "."


def _functions(root: str, sysdevices: str, notes: list[str],
               wanted: tuple[str, ...] = cap.ATTRS) -> Iterator[FunctionFolder]:
    """Read every PCI function by walking /sys/devices/pci*: a function's folder holds those of
    the functions behind it, so the walk learns each path without a readlink per device. Each
    folder is listed once (`os.scandir`: its file types come with the names, no stat per entry)
    and each function is yielded as soon as its folder is read, parents before their children.

    A folder is visited once (by device and inode): a tree whose address-named links point back
    up (`0000:7e:00.0 -> ..`) would otherwise grow without end. A linked folder is followed below
    `root` only (`rootfs.resolve_under`), never into the live host."""
    try:
        with os.scandir(sysdevices) as listing:
            roots = sorted((e.name, e.is_symlink()) for e in listing if e.name.startswith("pci"))
    except OSError:
        return
    seen: set[tuple[int, int]] = set()
    stack = [(f"{sysdevices}/{r}", r, None, link) for r, link in reversed(roots)]
    while stack:
        folder, rel, parent, is_link = stack.pop()
        try:
            if is_link:
                folder = rootfs.resolve_under(root, rootfs.host_path(root, folder))
            dir_fd = os.open(folder, _DIR_FLAGS)
        except BadInput as e:
            notes.append(f"{e}; left out")
            continue
        except OSError as e:
            notes.append(f"{folder}: cannot list ({e.strerror})")
            continue
        try:
            with os.scandir(dir_fd) as listing:
                entries = {e.name: e for e in listing}
            st = os.fstat(dir_fd)
            if (st.st_dev, st.st_ino) in seen:
                notes.append(f"{sysdevices}/{rel}: a link to a folder already read; left out")
                continue
            seen.add((st.st_dev, st.st_ino))
            name = rel.rpartition("/")[2]
            function = (_read_function(folder, dir_fd, entries, rel, name, parent, notes, wanted)
                        if _is_address(name) else None)
        except OSError as e:
            notes.append(f"{folder}: cannot list ({e.strerror})")
            continue
        finally:
            os.close(dir_fd)
        # _is_address, inline: a device folder holds some thirty entries and this runs for each.
        below_here = [e for e in entries if len(e) == 12 and e[4] == ":" and e[7] == ":" and e[10] == "."]
        if below_here:  # most functions are endpoints
            below = name if function is not None else None
            stack.extend((f"{folder}/{e}", f"{rel}/{e}", below, _is_link(entries[e]))
                         for e in sorted(below_here, reverse=True))
        if function is not None:
            yield function


def _is_link(entry: os.DirEntry[str]) -> bool:
    """`os.path.islink` of a listed entry, from the listing's file type."""
    try:
        return entry.is_symlink()
    except OSError:
        return False


def _read_groups(root: str) -> dict[str, list[str]] | None:
    """Each group's members, as named in its folder: PCI functions, and the ACPI devices an IOMMU
    driver grouped with them (which only these folders tell)."""
    base = os.path.join(root, "sys/kernel/iommu_groups")
    try:
        numbers = [e.name for e in os.scandir(base) if e.name.isdigit()]
    except OSError:
        return None
    groups = {}
    for n in numbers:
        try:
            members = sorted(os.listdir(f"{base}/{n}/devices"))
        except OSError:
            members = []
        groups[n] = members
    return groups or None


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


def _bus_functions(root: str) -> list[str]:
    """The names in /sys/bus/pci/devices (every function the kernel has); BadInput when there is
    no PCI bus below `root`."""
    buspci = os.path.join(root, "sys/bus/pci/devices")
    try:
        return sorted(os.listdir(buspci))
    except FileNotFoundError:
        raise BadInput(
            f"{buspci} does not exist: no PCI bus here (is {root} a Linux root folder?)",
        ) from None
    except OSError as e:
        raise BadInput(f"{buspci}: cannot list ({e.strerror})") from None


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


def _entry(f: FunctionFolder) -> dict[str, Any]:
    config = cap.pack_config(f.config) if f.config is not None else {"config": None, "config_size": None}
    return {"path": f.path, "attrs": f.attrs, "links": f.links, "files": f.files, **config}


def capture(root: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """Read everything vfiokit reads of the host below `root` into a raw capture (see `capture.py`
    for its layout): what a snapshot holds."""
    # What only `doctor` reads (module lists, vfio ids, ...), imported for a capture only.
    from vfiokit.sources import doctor_facts

    root = os.path.abspath(root)
    names = _bus_functions(root)
    notes: list[str] = []
    devices = {f.name: _entry(f) for f in _functions(root, os.path.join(root, "sys/devices"), notes)}
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
        "iommu_groups": _read_groups(root),
        "devices": devices,
        "read_notes": notes,
        "host_usage": host_usage.gather(root),
        "doctor": doctor_facts.gather(root),
    }


def read_topology(root: str | os.PathLike[str] = "/", *, reset_methods: bool = True) -> Topology:
    """Read the host below `root` into the model: the Topology of its `capture` (`build_topology`),
    without the capture. Each function is modelled as soon as its folder is read, so its config
    space is dropped at once; what only `doctor` reads is not read. `reset_methods=False` reads no
    `reset_method` file (each Device's `reset_methods` stays None, unknown): for a command that
    judges no reset (`groups`), one file fewer per function."""
    # The read allocates some ten containers per function and makes no reference cycle: those it
    # drops are freed by their count, the rest live on in the model. The cycle collector's passes
    # over them free nothing and cost 5% of the read at 10,000 functions.
    wanted = cap.ATTRS if reset_methods else tuple(a for a in cap.ATTRS if a != "reset_method")
    with gc_paused():
        return _read_topology(root, wanted)


def with_reset_methods(top: Topology, root: str | os.PathLike[str], addresses: Iterable[PciAddress]) -> Topology:
    """`top`, read below `root` with `reset_methods=False`, with the reset methods of the devices
    at `addresses` read from their sysfs folders: a command that judges the reset of a few devices
    (`check`, its targets) reads a file per device judged instead of one per function."""
    from dataclasses import replace

    root = os.path.abspath(root)
    read = {}
    for a in addresses:
        dev = top.by_address.get(a)
        if dev is not None and dev.sysfs_path is not None:
            text = rootfs.attr_under(root, f"/sys/devices/{dev.sysfs_path}/reset_method")
            if text is not None:
                read[a] = replace(dev, reset_methods=tuple(text.split()))
    if not read:
        return top
    return replace(top, devices=tuple(read.get(d.address, d) for d in top.devices))


def _read_topology(root: str | os.PathLike[str], wanted: tuple[str, ...]) -> Topology:
    origin = "live host" if os.path.abspath(root) == "/" else f"tree {os.path.normpath(root)}"
    root = os.path.abspath(root)
    names = _bus_functions(root)
    groups = cap.Groups(_read_groups(root), origin)
    notes: list[str] = []
    addresses: dict[str, PciAddress] = {}
    # A function that cannot be modelled is an error raised after the walk, once the groups said
    # theirs: that of the first by name, as `build_topology` meets them in the sorted capture.
    modelled: dict[str, Device | BadInput] = {}
    for f in _functions(root, os.path.join(root, "sys/devices"), notes, wanted):
        try:
            addr = addresses[f.name] = groups.address_of.get(f.name) or cap.parse_key(f.name, origin)
            modelled[f.name] = cap.model_device(
                addr, origin, path=f.path, parent=addresses.get(f.parent) if f.parent else None,
                attrs=f.attrs, links=f.links, files=f.files, cfg=f.config, group=groups.group_of.get(addr),
                known=groups.address_of)
        except BadInput as e:
            modelled[f.name] = e
    _note_left_out(root, names, modelled, notes)
    checked, group_notes = groups.check(modelled)
    devices: dict[PciAddress, Device] = {}
    for name in sorted(modelled):
        device = modelled[name]
        if isinstance(device, BadInput):
            raise device
        devices[device.address] = device
    return cap.topology(devices, checked, [*notes, *group_notes], host=cap.host_info(_host(root)), origin=origin,
                        as_root=os.geteuid() == 0, host_usage=host_usage.gather(root))
