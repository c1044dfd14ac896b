"""The live host: read `/sys`, `/proc` and `/etc` below a root folder into a raw capture.

`root` is `/` on a real host; tests and `--root` point it at a folder holding the same layout.
Symlinks inside the tree are resolved inside `root` (an absolute link target `/sys/...` is taken
as `<root>/sys/...`), so a captured tree can be read anywhere.

Cost: one `readlink`, one `scandir` and a few small reads per PCI function; the group folders
are listed once. No pci.ids lookups here (names are the renderer's business).
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from vfiokit import __version__, rootfs
from vfiokit.errors import BadInput
from vfiokit.model import HostInfo, Topology
from vfiokit.sources import capture as cap
from vfiokit.sources import doctor_facts, host_usage


def _read_config(path: str, notes: list[str], addr: str) -> bytes | None:
    try:
        return rootfs.read_file(path, 4096)
    except PermissionError:
        notes.append(f"{addr}: config space not readable (permission denied)")
    except OSError as e:
        notes.append(f"{addr}: config space not readable ({e.strerror})")
    except BadInput as e:
        notes.append(f"{addr}: config space not read ({e})")
    return None


def _device_entry(devdir: str, relpath: str, addr: str, entries: set[str], notes: list[str],
                  as_bytes: bool) -> dict:
    config = _read_config(f"{devdir}/config", notes, addr) if "config" in entries else None
    if "config" not in entries:
        notes.append(f"{addr}: no config file in {devdir}")
    # The ids, class and revision are the first 64 bytes of config space, which anyone may read;
    # their sysfs attributes are read only when that failed.
    wanted = cap.ATTRS if config is not None and len(config) >= 64 else cap.ATTRS + cap.ID_ATTRS
    attrs = {}
    for name in wanted:
        if name in entries:
            value = rootfs.read_attr(f"{devdir}/{name}")
            if value is not None:
                attrs[name] = value
    if wanted is not cap.ATTRS:
        for required in ("vendor", "device", "class"):
            if required not in attrs:
                notes.append(f"{addr}: sysfs attribute '{required}' missing in {devdir}")
    links = {}
    for name in cap.LINKS:
        if name in entries:
            with contextlib.suppress(OSError):
                links[name] = os.path.basename(os.readlink(f"{devdir}/{name}"))
    if as_bytes:  # modelled at once (cap.config_bytes): no hex and back for each device
        # Without the trailing zeros, as in the hex form: 4 KB a device would be 40 MB at 10,000.
        packed: dict[str, Any] = {cap.CONFIG_BYTES: None if config is None else (config.rstrip(b"\0"), len(config))}
    else:
        packed = cap.pack_config(config) if config is not None else {"config": None, "config_size": None}
    return {"path": relpath, "attrs": attrs, "links": links,
            "files": [f for f in cap.FILES if f in entries], **packed}


def _is_address(name: str) -> bool:
    return len(name) == 12 and name[4] == ":" and name[7] == ":" and name[10] == "."


def _walk(root: str, sysdevices: str, notes: list[str], as_bytes: bool) -> dict[str, dict]:
    """Read every PCI function by walking /sys/devices/pci*: a function's folder holds those of
    the functions behind it, so the walk learns each path without a readlink per device.

    A folder is visited once (by device and inode): a tree whose address-named links point back
    up (`0000:7e:00.0 -> ..`) would otherwise grow without end. A linked folder is followed below
    `root` only (`rootfs.resolve_under`), never into the live host."""
    try:
        roots = sorted(e for e in os.listdir(sysdevices) if e.startswith("pci"))
    except OSError:
        return {}
    devices: dict[str, dict] = {}
    seen: set[tuple[int, int]] = set()
    stack = [(f"{sysdevices}/{r}", r) for r in reversed(roots)]
    while stack:
        folder, rel = stack.pop()
        try:
            if os.path.islink(folder):
                folder = rootfs.resolve_under(root, rootfs.host_path(root, folder))
            st = os.stat(folder)
            entries = set(os.listdir(folder))
        except BadInput as e:
            notes.append(f"{e}; left out")
            continue
        except OSError as e:
            notes.append(f"{folder}: cannot list ({e.strerror})")
            continue
        if (st.st_dev, st.st_ino) in seen:
            notes.append(f"{sysdevices}/{rel}: a link to a folder already read; left out")
            continue
        seen.add((st.st_dev, st.st_ino))
        name = rel.rpartition("/")[2]
        if _is_address(name):
            devices[name] = _device_entry(folder, rel, name, entries, notes, as_bytes)
        stack.extend((f"{folder}/{e}", f"{rel}/{e}") for e in sorted(entries, reverse=True) if _is_address(e))
    return devices


def _read_groups(root: str) -> dict[str, list[str]] | None:
    base = os.path.join(root, "sys/kernel/iommu_groups")
    try:
        numbers = [e.name for e in os.scandir(base) if e.name.isdigit()]
    except OSError:
        return None
    groups = {}
    for n in numbers:
        try:
            members = sorted(e.name for e in os.scandir(os.path.join(base, n, "devices")))
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


def capture(root: str | os.PathLike[str] = "/", *, config_as_bytes: bool = False) -> dict[str, Any]:
    """Read the host below `root` into a raw capture (see `capture.py` for its layout).
    `config_as_bytes`: config space kept as read (`cap.CONFIG_BYTES`), for a capture modelled at
    once and never written out."""
    root = os.path.abspath(root)
    buspci = os.path.join(root, "sys/bus/pci/devices")
    sysdevices = os.path.join(root, "sys/devices")
    try:
        names = sorted(os.listdir(buspci))
    except FileNotFoundError:
        raise BadInput(
            f"{buspci} does not exist: no PCI bus here (is {root} a Linux root folder?)",
        ) from None
    except OSError as e:
        raise BadInput(f"{buspci}: cannot list ({e.strerror})") from None
    notes: list[str] = []
    devices = _walk(root, sysdevices, notes, config_as_bytes)
    # /sys/bus/pci/devices links every function into the tree walked above; a name there that the
    # walk did not meet is a dangling link or points elsewhere.
    for name in names:
        if name not in devices:
            link = os.path.join(buspci, name)
            try:
                target = rootfs.resolve_under(root, f"/sys/bus/pci/devices/{name}")
            except BadInput:
                target = link
            why = "which does not exist" if not os.path.isdir(target) else f"outside {sysdevices}"
            notes.append(f"{name}: {link} points to {target}, {why}; device left out")
    devices = {name: devices[name] for name in sorted(devices)}
    try:
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


def read_topology(root: str | os.PathLike[str] = "/") -> Topology:
    """Capture the host below `root` and model it."""
    raw = capture(root, config_as_bytes=True)
    origin = "live host" if os.path.abspath(root) == "/" else f"tree {Path(root)}"
    return cap.build_topology(raw, origin)
