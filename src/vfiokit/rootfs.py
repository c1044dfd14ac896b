"""Reading a machine below a root folder: the one toolkit every reader and the writer use.

A root folder stands for `/` (a copied tree, a test's `tmp_path`, or `/` itself). The rules, the
same for every caller:

- `resolve_under(root, path)` follows every component of `path` (as the host sees it) with
  `root` standing for `/`, as `chroot(2)` would: an absolute link target restarts at the root (a
  copied tree reads its own `/sys/devices`, never the live host's), a relative one is taken from
  the link's folder. A `..` that climbs above the root is refused (`OutsideRoot`): a tree that
  points out of itself is not the machine it claims to be, and the writer must never write there.
  On the live root `/` a `..` at `/` stays at `/`, as the kernel does. More than 40 links in one
  walk is a loop (the kernel's MAXSYMLINKS, fs/namei.c) and a one-line error, never a hang.
- `read_file(path, cap)` reads only a regular file, at most `cap` bytes: it opens with
  `O_NONBLOCK | O_NOFOLLOW` and checks `fstat` before reading, so a FIFO never blocks, a device
  (`/dev/zero`) or socket is refused, and nothing is read past the cap.
- `read_listed(folder, dir_fd, entry, cap)` is `read_file` of an entry a folder's listing says is a
  regular file, in fewer system calls (the sysfs reader's per-device reads).
- `read_attr(path, fallback)` is psutil's `cat`: a small file's text, stripped, or `fallback`.
- `cat(path)` is a whole file's text or None; `text_under` and `attr_under` read a path as the
  host sees it, resolved below the root.
- `read_hostname(root)` is the one hostname reader.
"""

from __future__ import annotations

import errno
import os
import stat

from vfiokit.errors import BadInput

#: The kernel's MAXSYMLINKS (include/linux/namei.h): more links than this in one walk is a loop.
MAX_LINKS = 40
#: Enough for any sysfs attribute (one page, fs/sysfs/file.c) and any config file we read.
ATTR_CAP = 65536
#: The biggest text file a reader takes (a mountinfo of thousands of mounts is ~1 MB, a
#: snapshot a few MB)).
FILE_CAP = 64 * 1024 * 1024


#: How every reader here opens a file: O_NONBLOCK, so that a FIFO never blocks the open or the read.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


class OutsideRoot(BadInput):
    """A path whose links lead above the root folder."""


class NotRegular(BadInput):
    """A FIFO, device or socket where a regular file was expected."""


def resolve_under(root: str, path: str) -> str:
    """The real path, below `root`, of `path` as the host sees it ("/etc/default/grub").

    Components that do not exist are kept as they are (the file may be created). Raises
    `OutsideRoot` when a link climbs above `root` and `BadInput` on a link loop, both naming the
    path as the host sees it. Cost: one `readlink` per component and per link followed.
    """
    root = os.path.abspath(root)
    live = root == "/"
    todo = [p for p in path.split("/") if p][::-1]
    rel: list[str] = []
    hops = 0
    while todo:
        part = todo.pop()
        if part == ".":
            continue
        if part == "..":
            if rel:
                rel.pop()
            elif not live:
                raise OutsideRoot(f"{'/' + path.lstrip('/')}: leads outside {root} (through '..')",
                                  file="/" + path.lstrip("/"))
            continue
        here = os.path.join(root, *rel, part)
        try:
            target = os.readlink(here)
        except OSError:  # not a link, or missing: taken as it is
            rel.append(part)
            continue
        hops += 1
        if hops > MAX_LINKS:
            raise BadInput(f"{'/' + path.lstrip('/')}: too many levels of symbolic links "
                           f"(a loop below {root})", file="/" + path.lstrip("/"))
        if target.startswith("/"):
            rel = []
        todo.extend([p for p in target.split("/") if p][::-1])
    return os.path.join(root, *rel)


def host_path(root: str, real: str) -> str:
    """`real` (a path below `root`) as the host sees it: `/etc/default/grub`."""
    rel = os.path.relpath(os.path.abspath(real), os.path.abspath(root))
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        raise OutsideRoot(f"{real}: not below {root}", file=real)
    return "/" if rel == os.curdir else "/" + rel


def read_file(path: str, cap: int = FILE_CAP, *, follow: bool = False) -> bytes:
    """The bytes of the regular file `path`, at most `cap` of them (more is an error).

    The last component is not followed unless `follow` (callers resolve with `resolve_under`
    first, so a link there would point where the caller has not checked). Raises
    `FileNotFoundError` when it does not exist, `NotRegular` for a FIFO, device or socket,
    `IsADirectoryError` for a folder, `BadInput` when the file is bigger than `cap`, and other `OSError`s as they are.
    """
    flags = _READ_FLAGS | (0 if follow else os.O_NOFOLLOW)
    # The type first, from the name: opening a device has effects of its own (a watchdog is armed
    # by its open), so a device, FIFO or socket planted under a root is refused unopened.
    _refuse_unless_regular(os.stat(path, follow_symlinks=follow).st_mode, path)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP and not follow:  # a link put there since the stat
            raise NotRegular(f"{path}: is a symbolic link, expected a regular file", file=path) from None
        raise
    try:
        st = os.fstat(fd)
        _refuse_unless_regular(st.st_mode, path)  # what was opened, if swapped since the stat
        chunks: list[bytes] = []
        size = 0
        # A file on disk is read whole in its first read, into one buffer (a snapshot of MBs). sysfs
        # and procfs files report size 4096 or 0: they are read on to end of file, not st_size.
        want = max(st.st_size, 65535) + 1
        while True:
            chunk = os.read(fd, min(want, cap + 1 - size))
            want = 65536
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                raise _too_big(path, cap)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _refuse_unless_regular(mode: int, path: str) -> None:
    """Raise what `read_file` says of a file that is not regular (`mode`, from a stat)."""
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):  # as open() says it, so callers' IsADirectoryError holds
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if stat.S_ISLNK(mode):
        raise NotRegular(f"{path}: is a symbolic link, expected a regular file", file=path)
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    raise NotRegular(f"{path}: is {kind}, expected a regular file", file=path)


def read_listed(folder: str, dir_fd: int, entry: os.DirEntry[str], cap: int, *, head: bool = False) -> bytes:
    """`read_file` of `entry`, met by `os.scandir(dir_fd)` in `folder` (the open folder `dir_fd`),
    in three system calls instead of five when the listing says the entry is a regular file.

    The listing's file type (d_type) stands for `read_file`'s `fstat`, and one read of `cap + 1`
    bytes for its read to end of file: a read of a regular file returns fewer bytes than asked
    only at its end (read(2)); sysfs answers an attribute from one show() (seq_file) and a binary
    attribute a page at a time (kernfs_file_read_iter), which the 4096 bytes of `config` fit. The
    open stays `O_NOFOLLOW | O_NONBLOCK`, relative to the folder already resolved: a link put there
    since the listing is refused, a FIFO answers at once, and nothing is read past `cap`. Anything
    else (a link, FIFO, device, folder) goes through `read_file`, which names what it is. Errors as
    `read_file`. With `head`, only the file's first `cap` bytes are read, and a longer file is no
    error (the 64-byte header of a `config` whose capabilities nobody asked for)."""
    if not entry.is_file(follow_symlinks=False):
        return read_file(f"{folder}/{entry.name}", cap)
    return _read_regular(folder, dir_fd, entry.name, cap, head)


def read_at(folder: str, dir_fd: int, name: str, cap: int, *, head: bool = False) -> bytes:
    """`read_listed` of `name` in the open folder `dir_fd` (`folder`) when no listing was made:
    `fstatat` says its type instead, so a folder need not be listed to read one file of it.
    Errors as `read_file` (FileNotFoundError when it is not there)."""
    if not stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
        return read_file(f"{folder}/{name}", cap)
    return _read_regular(folder, dir_fd, name, cap, head)


def _read_regular(folder: str, dir_fd: int, name: str, cap: int, head: bool = False) -> bytes:
    """Open, read and close `name`, a regular file of the open folder `dir_fd` as its listing or
    `fstatat` said a moment ago: all of it, or with `head` its first `cap` bytes."""
    try:
        fd = os.open(name, _READ_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:  # a link put there since: read_file names it
            return read_file(f"{folder}/{name}", cap)
        raise
    try:
        data = os.read(fd, cap if head else cap + 1)
    finally:
        os.close(fd)
    if len(data) > cap:
        raise _too_big(f"{folder}/{name}", cap)
    return data


def _too_big(path: str, cap: int) -> BadInput:
    return BadInput(f"{path}: bigger than {cap} bytes, not read", file=path)


def read_text(path: str, cap: int = FILE_CAP, *, follow: bool = False) -> str | None:
    """A regular file's text exactly (bytes that are not UTF-8 kept as surrogates, CR kept);
    None when it does not exist. Errors as `read_file`."""
    try:
        data = read_file(path, cap, follow=follow)
    except FileNotFoundError:
        return None
    return data.decode("utf-8", "surrogateescape")


def read_attr(path: str, fallback: str | None = None, cap: int = ATTR_CAP) -> str | None:
    """A small file's text, stripped (psutil's `cat`); `fallback` when it is missing,
    unreadable, bigger than `cap` or not a regular file. A link as last component is not followed (a sysfs
    attribute is a regular file; a link there could lead out of the root)."""
    try:
        text = read_file(path, cap).decode("utf-8", "replace").strip()
    except (OSError, BadInput):
        return fallback
    return text


def attr_under(root: str, path: str, fallback: str | None = None, cap: int = ATTR_CAP) -> str | None:
    """`read_attr` of `path` as the host sees it ("/proc/cmdline"), resolved below `root`;
    `fallback` also when it leads outside `root` or loops."""
    try:
        return read_attr(resolve_under(root, path), fallback, cap)
    except BadInput:
        return fallback


def cat(path: str, cap: int = FILE_CAP) -> str | None:
    """A regular file's whole text (bytes that are not UTF-8 shown as U+FFFD); None when it is
    missing, unreadable, bigger than `cap` or not a regular file."""
    try:
        return read_file(path, cap).decode("utf-8", "replace")
    except (OSError, BadInput):
        return None


def text_under(root: str, path: str, cap: int = FILE_CAP) -> str | None:
    """`cat` of `path` as the host sees it ("/proc/swaps"), resolved below `root`; None also when
    it leads outside `root` or loops."""
    try:
        return cat(resolve_under(root, path), cap)
    except BadInput:
        return None


def read_tail(path: str, size: int) -> bytes:
    """The last `size` bytes of the regular file `path` (a log that holds many boots). Errors as
    `read_file`."""
    _refuse_unless_regular(os.stat(path, follow_symlinks=False).st_mode, path)  # unopened, as read_file
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        _refuse_unless_regular(os.fstat(fd).st_mode, path)  # what was opened, if swapped since the stat
        os.lseek(fd, max(0, os.lseek(fd, 0, os.SEEK_END) - size), os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)[-size:]
    finally:
        os.close(fd)


def read_hostname(root: str) -> str | None:
    """The host's name: `proc/sys/kernel/hostname` (the running kernel's), else `etc/hostname`;
    None when neither says."""
    return attr_under(root, "/proc/sys/kernel/hostname") or attr_under(root, "/etc/hostname") or None
