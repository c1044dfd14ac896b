"""The guest's parts, from Debian's archive: kernels, busybox and Python, downloaded once and cached.

`apt-get download` runs with an apt configuration of the lab's own (`lab/.cache/apt/`: its sources
list, package lists and state), never the machine's sources: the lab needs bookworm for its 6.1
kernel and userland and trixie-backports for the newest kernel, whatever the host is configured
with. Nothing is installed on the host; `dpkg-deb -x` unpacks the packages into one folder that
the initramfs builder picks files from.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
APT = CACHE / "apt"
ARCHIVE_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

#: Where the packages come from (one-line sources.list entries, signed by Debian's archive keys).
SOURCES = (
    "deb [signed-by={key}] http://deb.debian.org/debian bookworm main",
    "deb [signed-by={key}] http://deb.debian.org/debian trixie-backports main",
)


@dataclass(frozen=True)
class Kernel:
    """One guest kernel: the packages that carry it and where they put the image and modules."""

    name: str  #: short name: fixtures live in tests/fixtures/lab/<name>/ unless it is the first
    release: str  #: `uname -r`
    packages: tuple[str, ...]  #: name=version, pinned
    image: str  #: the kernel image, relative to the unpacked root
    modules: str  #: the module tree, relative to the unpacked root


#: The guest kernels, pinned here and only here. The first is Debian 12's (bookworm/main; it stays
#: there until the next point release); the others are the newest Debian builds (trixie-backports,
#: where the kernel image is `usr/lib/modules/<release>/vmlinuz` in `linux-binary-<release>` and the
#: modules, xz-compressed, in `linux-modules-<release>`). Find newer ones with
#: `APT_CONFIG=lab/.cache/apt/apt.conf apt-cache depends linux-image-amd64`.
KERNELS = (
    Kernel("6.1", "6.1.0-50-amd64", ("linux-image-6.1.0-50-amd64-unsigned=6.1.176-1",),
           "boot/vmlinuz-6.1.0-50-amd64", "lib/modules/6.1.0-50-amd64"),
    Kernel("7.3", "7.3.4+deb13-amd64",
           tuple(f"linux-{p}-7.3.4+deb13-amd64=7.3.4-1~bpo13+1" for p in ("binary", "modules", "base")),
           "usr/lib/modules/7.3.4+deb13-amd64/vmlinuz", "usr/lib/modules/7.3.4+deb13-amd64"),
)
KERNEL_NAMES = {k.name: k for k in KERNELS}
DEFAULT = KERNELS[0]

#: Everything else the guest runs: busybox for init, Python and the C libraries it links.
USERLAND = (
    "busybox-static",
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
    "libc6", "zlib1g", "libexpat1",
)
PACKAGES = (*(p for k in KERNELS for p in k.packages), *USERLAND)


def apt_config() -> Path:
    """The lab's own apt configuration (written on first use); pass it as APT_CONFIG."""
    conf = APT / "apt.conf"
    sources = "".join(s.format(key=ARCHIVE_KEYRING) + "\n" for s in SOURCES)
    text = "".join(f'{k} "{v}";\n' for k, v in (
        ("Dir::Etc::SourceList", APT / "sources.list"), ("Dir::Etc::SourceParts", APT / "sources.list.d"),
        ("Dir::Etc::Preferences", APT / "preferences"), ("Dir::Etc::PreferencesParts", APT / "preferences.d"),
        ("Dir::State", APT / "state"), ("Dir::State::Lists", APT / "lists"),
        ("Dir::State::status", APT / "status"), ("Dir::Cache", APT / "cache"),
        ("APT::Architecture", "amd64"),
    ))
    for d in ("sources.list.d", "preferences.d", "state", "lists/partial", "cache"):
        (APT / d).mkdir(parents=True, exist_ok=True)
    (APT / "status").touch()
    if not (APT / "sources.list").is_file() or (APT / "sources.list").read_text() != sources:
        (APT / "sources.list").write_text(sources)
        shutil.rmtree(APT / "lists", ignore_errors=True)  # other sources: fetch their lists again
        (APT / "lists/partial").mkdir(parents=True)
    if not conf.is_file() or conf.read_text() != text:
        conf.write_text(text)
    return conf


def _apt(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"APT_CONFIG": str(apt_config()), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    return subprocess.run(["apt-get", "-q", *args], cwd=cwd, env=env, capture_output=True, text=True)


def _deb(debs: Path, spec: str) -> Path | None:
    name, _, version = spec.partition("=")
    found = sorted(debs.glob(f"{name}_{version.replace(':', '%3a') or '*'}_*.deb"))
    return found[-1] if found else None


def _download(debs: Path, specs: list[str]) -> None:
    apt_config()
    if not any((APT / "lists").glob("*_Packages*")):
        r = _apt(["update"], debs)
        if r.returncode != 0:
            raise SystemExit(f"lab: apt-get update (APT_CONFIG={APT / 'apt.conf'}) failed:\n{r.stderr.strip()}")
    r = _apt(["download", *specs], debs)
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


def kernel_image(root: Path, kernel: Kernel = DEFAULT) -> Path:
    return root / kernel.image


def modules_dir(root: Path, kernel: Kernel = DEFAULT) -> Path:
    return root / kernel.modules
