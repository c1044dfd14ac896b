"""What the host itself uses, down to PCI functions: disks under its file systems and swap, the NIC
under its default route, its console GPU, its USB keyboard, and what Proxmox VMs already hold.

Why: at VM start Proxmox binds EVERY non-bridge member of the passed device's IOMMU group to
vfio-pci without asking whether the host needs it (qemu-server PCI.pm `prepare_pci_device` ->
pve-common SysFSTools.pm `pci_dev_group_bind_to_vfio`). Only facts from the host itself tell which
members the host lives on.

Two halves:
- `gather(root)` here reads below `root` (`/` on a live host) and returns JSON-ready facts, stored
  in a capture as raw["host_usage"], so snapshots and samples carry them and `check` works offline.
- `analyses.host_needs.needs(facts, top)` is pure: it maps those facts (and the topology's boot_vga
  flags) to the PCI addresses the host needs, each with the reason and the chain that led there.

The facts' layout (version 1) is `formats/host_usage_facts.py`; `check_layout` there checks
facts read back from a snapshot.

Storage roles root, boot, efi and swap are host-critical; "mount" is any other file system on a
block device (a loss, not fatal). One storage entry per (use, PCI leaf): a root on md or LVM over
two controllers gives two entries for "/". The boot VGA is not repeated here: it is the device
attribute `boot_vga` of the capture.

Cost of `gather`: a few dozen small reads and readlinks; `zpool status -P` is run only on a live
host (root `/`) that mounts ZFS, because ZFS exposes no vdev membership in /sys or
/proc/spl/kstat/zfs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any

from vfiokit import rootfs
from vfiokit.errors import BadInput
from vfiokit.formats import host_usage_facts as facts_layout

_PCI_RE = re.compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
#: Path components worth showing in a chain: named kernel objects like nvme0, ata1, usb2,
#: virtio0, md0, sda1. SCSI targets (0:0:0:0), USB ports (1-1:1.0), HID ids and class folders
#: (block, net, nvme, input, graphics) say nothing to a user and are left out.
_NAMED_RE = re.compile(r"^[A-Za-z][A-Za-z_]*\d+[A-Za-z0-9_]*$")
_UNNAMED = re.compile(r"^(host|target|port|phy|end_device|expander|rport|session|card)\d")

ZpoolStatus = Callable[[str], "str | None"]


# -- reading below root ------------------------------------------------------------------------

def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _attr(folder: str, name: str) -> str | None:
    """A sysfs attribute's text, stripped; None when missing or empty."""
    return rootfs.read_attr(os.path.join(folder, name)) or None


def _class_devices(root: str, cls: str, prefix: str) -> Iterator[tuple[str, str]]:
    """(name, real path) of each `/sys/class/<cls>/<prefix>N` whose link resolves below `root`."""
    for name in _listdir(os.path.join(root, "sys/class", cls)):
        real = real_below(root, f"/sys/class/{cls}/{name}")
        if name.startswith(prefix) and real is not None:
            yield name, real


def real_below(root: str, path: str) -> str | None:
    """The real path below `root` of `path` as the host sees it (`rootfs.resolve_under`); None
    when it does not exist, leads outside `root` or loops."""
    try:
        real = rootfs.resolve_under(root, path)
    except BadInput:
        return None
    return real if os.path.lexists(real) else None


def _pci_chain(root: str, real: str) -> tuple[list[str], str | None]:
    """From a resolved /sys/devices path: the named objects between the nearest PCI function and
    the leaf (nearest first, leaf excluded), then that function; and the function's address."""
    rel = os.path.relpath(real, os.path.join(root, "sys/devices"))
    parts = rel.split("/")
    for i in range(len(parts) - 1, -1, -1):
        if _PCI_RE.match(parts[i]):
            between = [c for c in reversed(parts[i + 1:-1]) if _NAMED_RE.match(c) and not _UNNAMED.match(c)]
            return [*between, parts[i]], parts[i]
    return [], None


# -- storage -----------------------------------------------------------------------------------

def _block_chains(root: str, name: str, seen: frozenset[str] = frozenset()) -> list[list[str]]:
    """Chains from block device `name` down to PCI: partition -> disk, dm/md -> `slaves/`."""
    if name in seen:
        return [[name]]
    seen = seen | {name}
    real = real_below(root, f"/sys/class/block/{name}")
    if real is None:
        return [[name]]
    if os.path.exists(os.path.join(real, "partition")):
        # A partition's folder sits inside its disk's folder (block/genhd.c add_partition).
        disk = os.path.basename(os.path.dirname(real))
        return [[name, *c] for c in _block_chains(root, disk, seen)]
    slaves = _listdir(os.path.join(real, "slaves"))
    if slaves:  # device-mapper (LVM, LUKS) and md list what they sit on here
        return [[name, *c] for s in slaves for c in _block_chains(root, s, seen)]
    below, _ = _pci_chain(root, real)
    return [[name, *below]]


def _block_name(root: str, source: str, majmin: str | None) -> str | None:
    """The block device under a mount source: by major:minor (/sys/dev/block), else by resolving
    the /dev path (/dev/mapper/x and /dev/disk/by-* are udev symlinks), else by its basename."""
    if majmin:
        real = real_below(root, f"/sys/dev/block/{majmin}")
        if real is not None:
            return os.path.basename(real)
    if not source.startswith("/dev/"):
        return None
    real = real_below(root, source)
    for candidate in filter(None, (real and os.path.basename(real), os.path.basename(source))):
        if real_below(root, f"/sys/class/block/{candidate}") is not None:
            return candidate
    return None


def _mounts(root: str) -> list[tuple[str, str, str, str | None]]:
    """(mount point, source, fstype, major:minor or None), from mountinfo when there, else mounts."""
    out = []
    info = rootfs.text_under(root, "/proc/self/mountinfo")
    if info is not None:
        # proc(5): ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        for line in info.splitlines():
            left, sep, right = line.partition(" - ")
            f, r = left.split(), right.split()
            if sep and len(f) >= 5 and len(r) >= 2:
                out.append((_unescape(f[4]), _unescape(r[1]), r[0], f[2]))
        return out
    for line in (rootfs.text_under(root, "/proc/self/mounts") or "").splitlines():
        f = line.split()
        if len(f) >= 3:
            out.append((_unescape(f[1]), _unescape(f[0]), f[2], None))
    return out


def _unescape(text: str) -> str:
    # /proc mount tables escape space, tab, newline and backslash as octal (fs/proc_namespace.c).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), text)


def _mount_role(mountpoint: str) -> str:
    return {"/": "root", "/boot": "boot", "/boot/efi": "efi", "/efi": "efi"}.get(mountpoint, "mount")


def zpool_vdevs(status: str) -> list[str]:
    """Leaf vdev paths from `zpool status -P` text (the config table's first column)."""
    out, in_config = [], False
    for line in status.splitlines():
        stripped = line.strip()
        if stripped.startswith("config:"):
            in_config = True
        elif stripped.startswith("errors:"):
            in_config = False
        elif in_config and stripped.startswith("/"):
            out.append(stripped.split()[0])
    return out


def _run_zpool_status(pool: str) -> str | None:
    import shutil  # here: a host without ZFS (and every --root tree) never pays for it
    import subprocess

    exe = shutil.which("zpool")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, "status", "-P", pool], capture_output=True, text=True, timeout=15,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _storage(root: str, zpool_status: ZpoolStatus | None, notes: list[str]) -> tuple[list, dict]:
    entries: list[dict[str, Any]] = []
    zfs: dict[str, str] = {}
    mounts = _mounts(root)
    if not mounts:
        notes.append("no mount table (/proc/self/mountinfo or /proc/self/mounts): disks in use unknown")

    def add(use: str, role: str, source: str, fstype: str, chains: list[list[str]]) -> None:
        for chain in chains:
            pci = chain[-1] if _PCI_RE.match(chain[-1]) else None
            if pci is None and role == "mount":
                continue  # a loop or zram mount: no PCI device to lose, only noise in a snapshot
            entry = {"use": use, "role": role, "source": source, "fstype": fstype, "chain": chain, "pci": pci}
            if entry not in entries:
                entries.append(entry)

    by_point: dict[str, tuple[str, str, list[list[str]]]] = {}
    for point, source, fstype, majmin in mounts:
        if fstype == "zfs":
            pool = source.split("/")[0]
            if pool not in zfs:
                text = (zpool_status or _live_zpool(root))(pool)
                if text is None:
                    notes.append(f"ZFS pool {pool}: its disks are unknown (no `zpool status -P` output)")
                zfs[pool] = text or ""
            chains = [[pool, *c] for v in zpool_vdevs(zfs[pool])
                      for c in _block_chains(root, _block_name(root, v, None) or os.path.basename(v))]
        else:
            name = _block_name(root, source, majmin if majmin and not majmin.startswith("0:") else None)
            if name is None:
                continue  # proc, sysfs, tmpfs, overlay...: no block device under them
            chains = _block_chains(root, name)
        by_point[point] = (source, fstype, chains)
        add(point, _mount_role(point), source, fstype, chains)

    swaps = (rootfs.text_under(root, "/proc/swaps") or "").splitlines()[1:]
    for line in swaps:
        f = line.split()
        if len(f) < 2:
            continue
        path, kind = _unescape(f[0]), f[1]
        if kind == "file":
            # A swap file lives on the file system of the longest mount point above it.
            points = [p for p in by_point if path.startswith(p.rstrip("/") + "/")]
            if points:
                _, fstype, chains = by_point[max(points, key=len)]
                add(path, "swap", path, "swap", chains)
            continue
        name = _block_name(root, path, None)
        if name is not None:
            add(path, "swap", path, "swap", _block_chains(root, name))
    return entries, zfs


def _live_zpool(root: str) -> ZpoolStatus:
    # `zpool` speaks to the running kernel: its answer is only true for the live root.
    if os.path.abspath(root) == "/":
        return _run_zpool_status
    return lambda pool: None


# -- network -----------------------------------------------------------------------------------

def _default_route_ifaces(root: str) -> list[tuple[str, str]]:
    """(family, interface) of every default route, from /proc/net/route and /proc/net/ipv6_route."""
    out = []
    for line in (rootfs.text_under(root, "/proc/net/route") or "").splitlines()[1:]:
        f = line.split()
        # Iface Destination Gateway Flags RefCnt Use Metric Mask ... (net/ipv4/fib_trie.c)
        if len(f) >= 8 and f[1] == "00000000" and f[7] == "00000000" and ("ipv4", f[0]) not in out:
            out.append(("ipv4", f[0]))
    for line in (rootfs.text_under(root, "/proc/net/ipv6_route") or "").splitlines():
        f = line.split()
        # dest plen src splen nexthop metric refcnt use flags iface (net/ipv6/route.c);
        # the kernel keeps unreachable defaults on lo: not a way out.
        if len(f) >= 10 and f[0] == "0" * 32 and f[1] == "00" and f[9] != "lo" and ("ipv6", f[9]) not in out:
            out.append(("ipv6", f[9]))
    return out


def _lower_ifaces(root: str, iface: str) -> list[str]:
    """Interfaces under `iface`: bridge ports, bond slaves, a VLAN's (or macvlan's) parent."""
    base = os.path.join(root, "sys/class/net", iface)
    lowers = _listdir(os.path.join(base, "brif"))  # net/bridge/br_sysfs_if.c
    lowers += (rootfs.cat(os.path.join(base, "bonding/slaves")) or "").split()  # bonding_sysfs.c
    lowers += [n[len("lower_"):] for n in _listdir(base) if n.startswith("lower_")]  # netdev_adjacent
    if not lowers:
        # Older kernels without lower_* links: /proc/net/vlan/config "name | VID | parent".
        for line in (rootfs.text_under(root, "/proc/net/vlan/config") or "").splitlines()[2:]:
            f = [x.strip() for x in line.split("|")]
            if len(f) == 3 and f[0] == iface:
                lowers.append(f[2])
    return list(dict.fromkeys(lowers))


def _down_paths(root: str, iface: str, seen: frozenset[str] = frozenset()) -> list[list[str]]:
    """Paths from `iface` down to interfaces with nothing under them (the physical ones)."""
    if iface in seen:
        return []
    lowers = _lower_ifaces(root, iface)
    if not lowers:
        return [[iface]]
    return [[iface, *p] for low in lowers for p in _down_paths(root, low, seen | {iface})]


def _network(root: str) -> list[dict[str, Any]]:
    routes: dict[str, list[dict[str, Any]]] = {}
    for family, iface in _default_route_ifaces(root):
        for path in _down_paths(root, iface):
            routes.setdefault(path[-1], []).append({"family": family, "via": path})
    out = []
    for iface, real in _class_devices(root, "net", ""):
        below, pci = _pci_chain(root, real)
        if pci is None:
            continue  # lo, bridges, bonds, VLANs: virtual
        out.append({"interface": iface, "operstate": _attr(real, "operstate"),
                    "chain": [iface, *below], "pci": pci, "default_route": routes.get(iface, [])})
    return out


# -- console and input -------------------------------------------------------------------------

def _console(root: str) -> list[dict[str, Any]]:
    """Framebuffers on PCI devices. With DRM drivers fb0 is the DRM fbdev emulation and its parent
    is the GPU (drm_fb_helper sets info->device), so this also finds the DRM console."""
    out = []
    for fb, real in _class_devices(root, "graphics", "fb"):
        below, pci = _pci_chain(root, real)
        if pci is not None:
            out.append({"what": fb, "name": _attr(real, "name"), "chain": [fb, *below], "pci": pci})
    return out


_EV_KEY, _EV_REP = 1 << 0x01, 1 << 0x14  # include/uapi/linux/input-event-codes.h


def _input(root: str) -> list[dict[str, Any]]:
    """Keyboards (keys with autorepeat) and mice on PCI (USB) devices, up to their controller."""
    out = []
    for dev, real in _class_devices(root, "input", "input"):
        try:
            ev = int((rootfs.cat(os.path.join(real, "capabilities/ev")) or "0").split()[-1], 16)
        except (ValueError, IndexError):
            ev = 0
        children = _listdir(real)
        if ev & _EV_KEY and ev & _EV_REP:
            what = "keyboard"
        elif any(c.startswith("mouse") for c in children):
            what = "mouse"
        else:
            continue
        below, pci = _pci_chain(root, real)
        if pci is not None:
            out.append({"what": what, "name": _attr(real, "name"), "chain": [dev, *below], "pci": pci})
    return out


# -- Proxmox -----------------------------------------------------------------------------------

_HOSTPCI_KEY_RE = re.compile(r"^hostpci\d+$")


def _proxmox(root: str, node: str | None) -> dict[str, Any] | None:
    # On Proxmox /etc/pve/qemu-server is pmxcfs' link to nodes/<this node>/qemu-server.
    confdir = real_below(root, "/etc/pve/qemu-server") or os.path.join(root, "etc/pve/qemu-server")
    mapfile = os.path.join(root, "etc/pve/mapping/pci.cfg")
    if not os.path.isdir(confdir) and not os.path.exists(mapfile):
        return None
    # Imported here: most hosts and trees `groups` reads are not Proxmox nodes.
    from vfiokit.formats import pve_config as pc
    from vfiokit.formats import pve_mapping

    vms = []
    for name in _listdir(confdir):
        if not name.endswith(".conf"):
            continue
        conf = pc.parse_config(rootfs.cat(os.path.join(confdir, name)) or "", name, strict=False)
        # [PENDING] is applied at next start; snapshots ([name]) and [special:cloudinit] are not
        # the VM's current configuration.
        pending = conf.section(pc.PENDING)
        for section, is_pending in ((conf.main, False), (pending, True)):
            for key, value in section.values.items() if section else ():
                if _HOSTPCI_KEY_RE.match(key) and value:
                    vms.append({"vmid": name[:-5], "key": key, "value": value, "pending": is_pending})
    mappings = []
    mapping_text = rootfs.text_under(root, "/etc/pve/mapping/pci.cfg") or ""
    for mapping_id, entries in pve_mapping.parse_mapping_cfg(mapping_text, strict=False).items():
        for props in map(pve_mapping.parse_map_entry, entries):
            if "path" in props:
                mappings.append({"id": mapping_id, "node": props.get("node"), "path": props["path"]})
    return {"node": node, "vms": vms, "mappings": mappings}


def gather(root: str | os.PathLike[str] = "/", zpool_status: ZpoolStatus | None = None) -> dict[str, Any]:
    """Read what the host uses, below `root`. Never raises on a missing or unreadable source: what
    could not be read is said in "notes". `zpool_status(pool)` gives `zpool status -P` text
    (default: run `zpool` when `root` is `/`)."""
    root = os.path.abspath(root)
    notes: list[str] = []
    storage, zfs = _storage(root, zpool_status, notes)
    node = (rootfs.read_hostname(root) or "").split(".")[0] or None
    facts: dict[str, Any] = {
        "version": facts_layout.VERSION,
        "storage": storage,
        "network": _network(root),
        "console": _console(root),
        "input": _input(root),
        "proxmox": _proxmox(root, node),
        "zfs": zfs,
        "notes": notes,
    }
    if not os.path.exists(os.path.join(root, "proc/net/route")):
        notes.append("no /proc/net/route: the default route's NIC is unknown")
    return facts
