"""How the live reader reads PCI function folders below /sys/devices and IOMMU group folders
below /sys/kernel/iommu_groups: the walk of every function (`functions`), one function's folder
(`read_function`), the group folders (`read_groups`). No model here: `sysfs` models what these read.

Cost per PCI function: its folder opened and listed once (`scandir`, file types included), then
`config` and a few attributes opened relative to it (open, read, close) and a `readlink` per link
there (`cap.LINKS`, or those a command asks for); each group folder is listed once. A command that
needs no presence-only file (`cap.FILES`) has its endpoints read without opening their folders
(`functions(list_endpoints=False)`): each file is named through the endpoint's folder from its
bridge's, which is open to be listed, each attribute asked for by name and `physfn` probed before
it is read. At 50,000 functions that took `simulate --json` from 1.73 s to 1.58 s.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NamedTuple

from vfiokit import rootfs
from vfiokit.errors import BadInput
from vfiokit.sources import capture as cap

#: How the walk opens a folder: O_DIRECTORY refuses a FIFO or file named like a function before
#: any open of it; the folder's files are then opened relative to it (no path walked again).
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK | os.O_CLOEXEC

#: How much of each function's `config` a walk reads: all of config space (4096 bytes as root, the
#: kernel gives others 64), or its standard header alone, which holds all that names a function
#: (ids, class, revision, header type), as `lspci -nn` reads it (pciutils lspci.c scan_device: 64
#: bytes; 128 for a CardBus bridge, whose subsystem ids a header read leaves unknown). Each 4-byte
#: word of a real device's config space is one access to the device (pci-sysfs.c
#: pci_read_config): the header is 16 of them, the whole space 1,024. On a virtual machine each is
#: a trap to the hypervisor: 2.4 ms per function for all of it, 0.25 ms for the header, on the one
#: this was measured on.
CONFIG_SPACE = 4096
HEADER = 64


class FunctionFolder(NamedTuple):
    """What the walk read in one PCI function's folder below /sys/devices. `sysfs.model_functions`
    unpacks it in this order."""

    #: The folder's name, the function's address as the kernel writes it ("0000:01:00.0").
    name: str
    #: The folder below /sys/devices ("pci0000:00/0000:00:01.1/0000:01:00.0").
    path: str
    #: The name of the function folder it sits in (its bridge); None on a root bus.
    parent: str | None
    attrs: dict[str, str]
    #: basenames of the targets of the links read (`cap.LINKS`, or those `links_wanted`)
    links: dict[str, str]
    #: which of `cap.FILES` are there; None when the folder was not listed (unknown)
    files: list[str] | None
    #: config space as read; None when it could not be (said in the notes)
    config: bytes | None


def _read_config(folder: str, dir_fd: int, entry: os.DirEntry[str], notes: list[str], addr: str,
                 size: int) -> bytes | None:
    try:
        return rootfs.read_listed(folder, dir_fd, entry, size, head=size < CONFIG_SPACE)
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
                   parent: str | None, notes: list[str], wanted: tuple[str, ...],
                   config: bytes | None = None, links_wanted: tuple[str, ...] = cap.LINKS,
                   config_bytes: int = CONFIG_SPACE) -> FunctionFolder:
    """Read the function whose folder `folder` is open as `dir_fd` and listed as `entries`, and of
    its attributes those `wanted` (a part of `cap.ATTRS`), of its links those `links_wanted` (a
    part of `cap.LINKS`) and of its `config` `config_bytes`; `config` when it was read already."""
    entry = entries.get("config")
    if config is None:
        config = _read_config(folder, dir_fd, entry, notes, name, config_bytes) if entry is not None else None
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
    for link in links_wanted:
        if link in entries:
            try:
                target = os.readlink(link, dir_fd=dir_fd)
            except OSError:  # not a link: no target to keep
                continue
            links[link] = target.rpartition("/")[2]  # its basename
    return FunctionFolder(name, rel, parent, attrs, links, [f for f in cap.FILES if f in entries], config)


def _header_config(folder: str, dir_fd: int, name: str, size: int) -> bytes | None:
    """`size` bytes of the `config` of function `name`, a folder in the open folder `dir_fd`
    (`folder`), when it is a regular file of at least the 64-byte header; None otherwise (the
    function's own listing then reads it again and says why)."""
    try:
        config = rootfs.read_at(folder, dir_fd, f"{name}/config", size, head=size < CONFIG_SPACE)
    except (OSError, BadInput):
        return None
    return config if len(config) >= 64 else None


def _read_endpoint(folder: str, dir_fd: int, rel: str, name: str, parent: str | None, config: bytes,
                   wanted: tuple[str, ...], links_wanted: tuple[str, ...]) -> FunctionFolder:
    """A function that is no bridge (header type 0, config byte 0x0E), read without listing or
    opening its folder: its files are named through it from its bridge's folder, open as `dir_fd`
    (`folder`). Only a bridge has a secondary bus and so functions behind it (probe.c
    pci_scan_bridge), and the attributes are those the kernel shows: `boot_vga` on a VGA-class
    function only (pci-sysfs.c pci_dev_attrs_are_visible), `reset_method` where a reset exists,
    each asked for by name (`fstatat`); the links likewise. Listing a function's folder cost five
    system calls and thirty entries, opening it two calls: the dearest part of reading a large
    host. Presence-only files stay unknown."""
    attrs = {}
    for attr in wanted:
        if attr == "boot_vga" and not (config[0x0B] == 0x03 and config[0x0A] == 0x00):
            continue
        try:
            attrs[attr] = rootfs.read_at(folder, dir_fd, f"{name}/{attr}",
                                         rootfs.ATTR_CAP).decode("utf-8", "replace").strip()
        except (OSError, BadInput):  # not there, or not a regular file: as a listing without it
            continue
    links = {}
    for link in links_wanted:
        path = f"{name}/{link}"
        # Most functions are no virtual function: `physfn` is asked whether it is there first, as
        # a failing readlink would raise, at twice the cost of faccessat's answer.
        if link == "physfn" and not os.access(path, os.F_OK, dir_fd=dir_fd, follow_symlinks=False):
            continue
        try:
            links[link] = os.readlink(path, dir_fd=dir_fd).rpartition("/")[2]  # its basename
        except OSError:  # not there, or not a link
            continue
    return FunctionFolder(name, rel, parent, attrs, links, None, config)


def is_address(name: str) -> bool:
    """The name is a function's address as the kernel writes it (`0000:01:00.0`)."""
    return len(name) == 12 and name[4] == ":" and name[7] == ":" and name[10] == "."


def functions(root: str, sysdevices: str, notes: list[str], wanted: tuple[str, ...] = cap.ATTRS, *,
              list_endpoints: bool = True, links_wanted: tuple[str, ...] = cap.LINKS,
              config_bytes: int = CONFIG_SPACE) -> Iterator[FunctionFolder]:
    """Read every PCI function by walking /sys/devices/pci*: a function's folder holds those of
    the functions behind it, so the walk learns each path without a readlink per device. Each
    folder is listed once (`os.scandir`: its file types come with the names, no stat per entry)
    and each function is yielded as soon as it is read, parents before their children. With
    `list_endpoints=False`, a function whose config header says it is no bridge is read from its
    bridge's folder, without listing its own (`_read_endpoint`), its `files` unknown. Of the
    links, those `links_wanted` are read; of each `config`, `config_bytes` (`CONFIG_SPACE` or
    `HEADER`).

    A folder is visited once (by device and inode): a tree whose address-named links point back
    up (`0000:7e:00.0 -> ..`) would otherwise grow without end. A linked folder is followed below
    `root` only (`rootfs.resolve_under`), never into the live host; it is always listed."""
    try:
        with os.scandir(sysdevices) as listing:
            roots = sorted((e.name, e.is_symlink()) for e in listing if e.name.startswith("pci"))
    except OSError:
        return
    seen: set[tuple[int, int]] = set()
    # (folder, path below /sys/devices, parent's name, is a link, config already read)
    stack: list[tuple[str, str, str | None, bool, bytes | None]] = [
        (f"{sysdevices}/{r}", r, None, link, None) for r, link in reversed(roots)]
    while stack:
        folder, rel, parent, is_link, config = stack.pop()
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
        name = rel.rpartition("/")[2]
        endpoints: list[FunctionFolder] = []
        try:
            with os.scandir(dir_fd) as listing:
                entries = {e.name: e for e in listing}
            st = os.fstat(dir_fd)
            if (st.st_dev, st.st_ino) in seen:
                notes.append(f"{sysdevices}/{rel}: a link to a folder already read; left out")
                continue
            seen.add((st.st_dev, st.st_ino))
            function = (_read_function(folder, dir_fd, entries, rel, name, parent, notes, wanted, config,
                                       links_wanted, config_bytes) if is_address(name) else None)
            below = name if function is not None else None
            later = []
            # is_address, inline: a device folder holds some thirty entries and this runs for each.
            for e in sorted(e for e in entries if len(e) == 12 and e[4] == ":" and e[7] == ":" and e[10] == "."):
                linked = _is_link(entries[e])
                header = None
                if not list_endpoints and not linked:
                    header = _header_config(folder, dir_fd, e, config_bytes)
                    if header is not None and header[0x0E] & 0x7F == 0:
                        # A real folder with no function behind it: it cannot lead back to one read.
                        endpoints.append(_read_endpoint(folder, dir_fd, f"{rel}/{e}", e, below, header, wanted,
                                                        links_wanted))
                        continue
                later.append((f"{folder}/{e}", f"{rel}/{e}", below, linked, header))
        except OSError as e:
            notes.append(f"{folder}: cannot list ({e.strerror})")
            continue
        finally:
            os.close(dir_fd)
        stack.extend(reversed(later))
        if function is not None:
            yield function
        yield from endpoints


def read_function(folder: str, rel: str, parent: str | None, notes: list[str],
                  wanted: tuple[str, ...]) -> FunctionFolder | None:
    """One function's folder `folder` (resolved below the root; `rel` its path below /sys/devices),
    read as the walk reads it; None, said in `notes`, when it cannot be listed."""
    try:
        dir_fd = os.open(folder, _DIR_FLAGS)
    except OSError as e:
        notes.append(f"{folder}: cannot list ({e.strerror})")
        return None
    try:
        with os.scandir(dir_fd) as listing:
            entries = {e.name: e for e in listing}
        return _read_function(folder, dir_fd, entries, rel, rel.rpartition("/")[2], parent, notes, wanted)
    except OSError as e:
        notes.append(f"{folder}: cannot list ({e.strerror})")
        return None
    finally:
        os.close(dir_fd)


def _is_link(entry: os.DirEntry[str]) -> bool:
    """`os.path.islink` of a listed entry, from the listing's file type."""
    try:
        return entry.is_symlink()
    except OSError:
        return False


def read_groups(root: str) -> dict[str, list[str]] | None:
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


def bus_functions(root: str) -> list[str]:
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
