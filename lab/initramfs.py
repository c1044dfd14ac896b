"""The guest's initramfs, built as three gzip'd cpio archives that the kernel unpacks in turn
(init/initramfs.c accepts concatenated archives):

- base: busybox, Python with its stdlib, click/rich and their deps, the kernel modules the
  topologies need (one base per kernel); cached, rebuilt only when its inputs change;
- project: the project's own `src/` and the init script, rebuilt every run (so a fresh run always
  tests the code in the tree);
- topology: which modules to load and the set-up steps, one small archive per boot.

Python files are compiled on the host (unchecked-hash .pyc, same 3.11 bytecode as Debian's 3.11):
compiling them in the guest under TCG would cost more than the boot itself.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import lzma
import os
import shutil
import subprocess
import sys
from pathlib import Path

from lab import fetch
from lab.topologies import TOPOLOGIES, Topology

REPO = Path(__file__).resolve().parent.parent

#: Pure-Python packages the guest needs on its path: the project's runtime deps and theirs.
SITE_PACKAGES = ("click", "rich", "markdown_it", "mdurl", "pygments")
SITE_DISTRIBUTIONS = ("click", "rich", "markdown-it-py", "mdurl", "Pygments")

#: Parts of the unpacked packages the guest does not need.
_SKIP = ("boot", "lib/modules", "usr/lib/modules", "usr/share", "usr/lib/x86_64-linux-gnu/gconv", "etc")

INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /etc/network /usr/sbin /sbin
/bin/busybox mount -t devtmpfs dev /dev
exec 0</dev/console 1>/dev/console 2>&1
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
ln -sf /proc/mounts /etc/mtab
hostname -F /etc/hostname
dmesg -n 1
for m in $(cat /lab/modules); do insmod "/lab/mod/$m.ko" || echo "lab: insmod $m failed"; done
# wait_for PATH: a set-up step's guard for what a driver creates asynchronously (NVMe namespaces).
wait_for() { i=0; while [ ! -e "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done; }
while read -r step; do
  echo "lab: setup: $step"
  eval "$step" || echo "lab: setup step failed: $step"
done < /lab/setup
out=/dev/ttyS1
{
  echo "=== vfiokit-lab truth ==="
  for g in /sys/kernel/iommu_groups/*; do
    for d in "$g"/devices/*; do [ -e "$d" ] && echo "${g##*/} ${d##*/}"; done
  done
  echo "=== vfiokit-lab state ==="
  cat /proc/mounts; ip route
  for b in /sys/class/net/*/brif; do [ -d "$b" ] && n=${b%/brif} && echo "bridge ${n##*/} ports: $(ls "$b")"; done
  echo "=== vfiokit-lab snapshot ==="
} > $out
PYTHONPATH=/lab/src:/lab/site PYTHONDONTWRITEBYTECODE=1 HOME=/root \
  python3 -m vfiokit snapshot -o - > /tmp/snapshot.json 2>/tmp/snapshot.err
rc=$?
cat /tmp/snapshot.err
{ cat /tmp/snapshot.json; echo "=== vfiokit-lab end rc=$rc ==="; } > $out
[ -e /lab/debug ] && { cat /proc/filesystems; lsmod; ls -l /dev; ip addr; ip route; dmesg; }
sync
poweroff -f
"""


def _cpio(staging: Path, out: Path) -> None:
    """Pack `staging` as a newc cpio archive owned by root, gzip'd, into `out`."""
    names = sorted(str(p.relative_to(staging)) for p in staging.rglob("*"))
    data = "\n".join(names).encode() + b"\n"
    with open(out, "wb") as f:
        cpio = subprocess.Popen(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"],
                                cwd=staging, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        gz = subprocess.Popen(["gzip", "-1"], stdin=cpio.stdout, stdout=f)
        assert cpio.stdout is not None
        cpio.stdout.close()
        assert cpio.stdin is not None
        cpio.stdin.write(data)
        cpio.stdin.close()
        if cpio.wait() != 0 or gz.wait() != 0:
            raise SystemExit(f"lab: cpio of {staging} failed")


def _compile(folder: Path) -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0",
                    "--invalidation-mode", "unchecked-hash", str(folder)], check=True,
                   stdout=subprocess.DEVNULL)


def _module_bytes(ko: Path) -> bytes:
    """A module file's ELF image; Debian's newer kernels ship modules xz-compressed (`.ko.xz`),
    decompressed here so busybox insmod hands the kernel a plain ELF."""
    data = ko.read_bytes()
    return lzma.decompress(data) if ko.name.endswith(".xz") else data


def _modinfo(ko: Path) -> dict[str, list[str]]:
    """The `.modinfo` section of a kernel module (key=value strings), read from its ELF headers."""
    data = _module_bytes(ko)
    le = "little"
    shoff = int.from_bytes(data[0x28:0x30], le)
    shentsize, shnum, shstrndx = (int.from_bytes(data[o:o + 2], le) for o in (0x3A, 0x3C, 0x3E))

    def section(i: int) -> tuple[int, int, int]:
        h = shoff + i * shentsize
        return (int.from_bytes(data[h:h + 4], le), int.from_bytes(data[h + 0x18:h + 0x20], le),
                int.from_bytes(data[h + 0x20:h + 0x28], le))

    _, stroff, _ = section(shstrndx)
    info: dict[str, list[str]] = {}
    for i in range(shnum):
        name_off, off, size = section(i)
        name = data[stroff + name_off:data.index(b"\0", stroff + name_off)]
        if name == b".modinfo":
            for item in data[off:off + size].split(b"\0"):
                key, sep, value = item.decode(errors="replace").partition("=")
                if sep:
                    info.setdefault(key, []).append(value)
    return info


def module_order(wanted: list[str], moddir: Path) -> list[tuple[str, Path]]:
    """`wanted` modules and everything they depend on, dependencies first (what modprobe does).
    A module this kernel builds in (listed in its `modules.builtin`) needs no loading."""
    files = {p.name.split(".ko")[0].replace("-", "_"): p
             for p in (moddir / "kernel").rglob("*.ko*") if p.name.endswith((".ko", ".ko.xz"))}
    builtin = {Path(line).name.split(".ko")[0].replace("-", "_")
               for line in (moddir / "modules.builtin").read_text().split()}
    order: list[tuple[str, Path]] = []

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if any(n == name for n, _ in order) or (name in builtin and name not in files):
            return
        if name not in files:
            raise SystemExit(f"lab: kernel module {name} not found in {moddir}")
        for dep in _modinfo(files[name]).get("depends", [""])[0].split(","):
            if dep:
                visit(dep)
        order.append((name, files[name]))

    for w in wanted:
        visit(w)
    return order


def _copy_tree(src: Path, dest: Path, skip: tuple[str, ...]) -> None:
    for dirpath, dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        dirnames[:] = [d for d in dirnames if str(rel / d) not in skip]
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for f in filenames:
            s = Path(dirpath) / f
            if rel == Path(".") and f.startswith("."):
                continue
            t = dest / rel / f
            if s.is_symlink():
                t.symlink_to(os.readlink(s))
            else:
                shutil.copy2(s, t)


def _all_modules(kernel: fetch.Kernel) -> list[str]:
    out: list[str] = []
    for topo in TOPOLOGIES.values():
        out.extend(m for m in topo.modules_for(kernel.name) if m not in out)
    return out


def base(root: Path, kernel: fetch.Kernel = fetch.DEFAULT) -> Path:
    """The cached base archive for `kernel`: busybox, Python, site packages, kernel modules."""
    modules = module_order(_all_modules(kernel), fetch.modules_dir(root, kernel))
    versions = [f"{d}={importlib.metadata.version(d)}" for d in SITE_DISTRIBUTIONS]
    stamp = hashlib.sha256("\n".join([
        (root / ".packages").read_text(), *versions, *(n for n, _ in modules), INIT,
        sys.version, Path(__file__).read_text(),
    ]).encode()).hexdigest()[:16]
    out = fetch.CACHE / f"base-{kernel.name}-{stamp}.cpio.gz"
    if out.exists():
        return out
    for old in fetch.CACHE.glob(f"base-{kernel.name}-*.cpio.gz"):
        old.unlink()
    staging = fetch.CACHE / f"base-{kernel.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    _copy_tree(root, staging, _SKIP)
    (staging / "usr/bin/python3").symlink_to("python3.11")
    _compile(staging / "usr/lib/python3.11")
    site = staging / "lab/site"
    site.mkdir(parents=True)
    for pkg in SITE_PACKAGES:
        src = Path(importlib.import_module(pkg).__file__ or "").parent
        shutil.copytree(src, site / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    _compile(site)
    mod = staging / "lab/mod"
    mod.mkdir(parents=True)
    for name, path in modules:
        (mod / f"{name}.ko").write_bytes(_module_bytes(path))
    (staging / "etc").mkdir()
    (staging / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (staging / "etc/group").write_text("root:x:0:\n")
    (staging / "etc/hostname").write_text("vfiokit-lab\n")
    (staging / "etc/fstab").write_text("# <file system> <mount point> <type> <options> <dump> <pass>\n")
    (staging / "root").mkdir()
    tmp = out.with_suffix(".tmp")
    _cpio(staging, tmp)
    tmp.rename(out)
    shutil.rmtree(staging)
    return out


def project(workdir: Path) -> Path:
    """The project's `src/` (as it is now in the tree) and the init script."""
    staging = workdir / "project.staging"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(REPO / "src", staging / "lab/src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _compile(staging / "lab/src")
    (staging / "init").write_text(INIT)
    (staging / "init").chmod(0o755)
    out = workdir / "project.cpio.gz"
    _cpio(staging, out)
    shutil.rmtree(staging)
    return out


def topology(topo: Topology, root: Path, workdir: Path, debug: bool = False,
             kernel: fetch.Kernel = fetch.DEFAULT) -> Path:
    """The per-boot part: modules to load (dependencies first) and the set-up steps."""
    staging = workdir / f"{topo.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "lab").mkdir(parents=True)
    order = module_order(list(topo.modules_for(kernel.name)), fetch.modules_dir(root, kernel))
    (staging / "lab/modules").write_text("".join(f"{n}\n" for n, _ in order))
    (staging / "lab/setup").write_text("".join(f"{s}\n" for s in topo.machine.setup))
    if debug:  # the init then dumps dmesg, modules, devices and network to the console
        (staging / "lab/debug").write_text("")
    out = workdir / f"{topo.name}.cpio.gz"
    _cpio(staging, out)
    shutil.rmtree(staging)
    return out
