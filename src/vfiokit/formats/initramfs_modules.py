"""Module lists: `/etc/initramfs-tools/modules` and `/etc/modules-load.d/*.conf`. Pure: no I/O.

Both are one module per line with `#` comments. initramfs-tools' `hook-functions`
`add_modules_from_file` reads the first with `grep '^[^#]' | while read -r module args` (a module
name, then optional parameters) and copies each module into the initramfs, where
`scripts/functions` `load_modules` loads them before the root file system is mounted;
systemd-modules-load reads the second (modules-load.d(5): `#` and `;` start comments).

vfiokit adds its modules below a marker line and takes back exactly those lines: a module the
user listed already is not listed twice, and stays when vfiokit's lines go.
"""

from __future__ import annotations

from vfiokit.formats.modprobe import module_key

INITRAMFS_MODULES = "/etc/initramfs-tools/modules"
MODULES_LOAD = "/etc/modules-load.d/vfio.conf"
MARKER = "# vfiokit bind --persistent: vfio modules ('vfiokit unbind --persistent' removes them)"


def vfio_modules(kernel_release: str | None) -> list[str]:
    """The vfio modules to load early. vfio_virqfd was folded into vfio itself in Linux 6.2
    (commit e2d55709398e "vfio: Fold vfio_virqfd.ko into vfio.ko"): listing it on a newer kernel
    makes modprobe fail, so it is listed only for older (or unknown-older) kernels."""
    mods = ["vfio", "vfio_iommu_type1", "vfio_pci"]
    if kernel_release is not None:
        try:
            major, minor = (int(x) for x in kernel_release.split("-")[0].split(".")[:2])
        except ValueError:
            return mods
        if (major, minor) < (6, 2):
            mods.append("vfio_virqfd")
    return mods


def entries(text: str | None) -> list[tuple[int, str]]:
    """(line number, module name) of each module the file lists, in order (kmod spelling: `-` and
    `_` the same); the words after a name are its parameters."""
    out = []
    for n, line in enumerate((text or "").split("\n"), 1):
        words = line.split()
        if words and not words[0].startswith(("#", ";")):
            out.append((n, module_key(words[0])))
    return out


def listed(text: str | None) -> list[str]:
    """Module names the file lists (kmod spelling: `-` and `_` the same)."""
    return [m for _, m in entries(text)]


def with_modules(text: str | None, modules: list[str]) -> str:
    """The file with the `modules` it does not list yet appended below vfiokit's marker; other
    lines keep their bytes."""
    have = listed(text)
    missing = [m for m in modules if module_key(m) not in have]
    if not missing:
        return text or ""
    base = text or ""
    if base and not base.endswith("\n"):
        base += "\n"
    lines = base.split("\n")[:-1]
    if MARKER in lines:
        at = lines.index(MARKER) + 1
        while at < len(lines) and lines[at].strip() and not lines[at].startswith("#"):
            at += 1
        lines[at:at] = missing
    else:
        lines += [MARKER, *missing]
    return "\n".join(lines) + "\n"


def without_modules(text: str, modules: list[str]) -> str | None:
    """The file with vfiokit's marker and the `modules` listed right below it taken out (a module
    the user listed elsewhere stays); None when nothing is left (the file is removed)."""
    lines = text.split("\n")
    if MARKER not in lines:
        return text
    at = lines.index(MARKER)
    end = at + 1
    keys = {module_key(m) for m in modules}
    kept_below: list[str] = []
    while end < len(lines) and lines[end].strip() and not lines[end].startswith("#"):
        if module_key(lines[end].split()[0]) not in keys:
            kept_below.append(lines[end])
        end += 1
    rest = lines[:at] + kept_below + lines[end:]
    new = "\n".join(rest)
    return None if not new.strip() else new
