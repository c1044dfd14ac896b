"""The guest's parts, from Debian's archive: kernel, busybox and Python, downloaded once and cached.

`apt-get download` fetches from the host's configured Debian repositories (no root needed on the
guest side, nothing installed on the host); `dpkg-deb -x` unpacks them into one folder that the
initramfs builder picks files from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"

#: The guest kernel, pinned here and only here: the one in bookworm/main (it stays there until the
#: next point release; bookworm-security replaces its kernels faster).
KERNEL_ABI = "6.1.0-50-amd64"
KERNEL_PACKAGE = f"linux-image-{KERNEL_ABI}-unsigned"
KERNEL_VERSION = "6.1.176-1"

#: Everything the guest runs: the kernel, busybox for init, Python and the C libraries it links.
PACKAGES = (
    f"{KERNEL_PACKAGE}={KERNEL_VERSION}",
    "busybox-static",
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
    "libc6", "zlib1g", "libexpat1",
)


def _deb(debs: Path, spec: str) -> Path | None:
    name, _, version = spec.partition("=")
    found = sorted(debs.glob(f"{name}_{version.replace(':', '%3a') or '*'}_*.deb"))
    return found[-1] if found else None


def _download(debs: Path, specs: list[str]) -> None:
    cmd = ["apt-get", "download", "-q", *specs]
    r = subprocess.run(cmd, cwd=debs, capture_output=True, text=True)
    if r.returncode != 0:
        # A fresh container has no package lists yet: fetch them once and retry.
        sudo = ["sudo"] if os.geteuid() != 0 and shutil.which("sudo") else []
        subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, capture_output=True)
        r = subprocess.run(cmd, cwd=debs, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"lab: apt-get download {' '.join(specs)} failed:\n{r.stderr.strip()}")


def fetch() -> Path:
    """Download what is missing and return the folder holding every package unpacked."""
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [s for s in PACKAGES if _deb(debs, s) is None]
    if missing:
        _download(debs, missing)
    files = [_deb(debs, s) for s in PACKAGES]
    if None in files:
        raise SystemExit(f"lab: downloaded packages not found in {debs}")
    stamp = "\n".join(p.name for p in files if p)
    root = CACHE / "root"
    if (root / ".packages").is_file() and (root / ".packages").read_text() == stamp:
        return root
    shutil.rmtree(root, ignore_errors=True)
    tmp = CACHE / "root.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for p in files:
        subprocess.run(["dpkg-deb", "-x", str(p), str(tmp)], check=True)
    (tmp / ".packages").write_text(stamp)
    tmp.rename(root)
    return root


def kernel_image(root: Path) -> Path:
    return root / "boot" / f"vmlinuz-{KERNEL_ABI}"


def modules_dir(root: Path) -> Path:
    return root / "lib" / "modules" / KERNEL_ABI
