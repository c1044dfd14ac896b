"""The Python that runs vfiokit in a benchmark: the one the Debian package runs on, as it runs there.

On a Proxmox node `/usr/bin/vfiokit` starts Debian's `/usr/bin/python3` with Debian's click and
rich, and the modules are byte-compiled at install (dh_python3). A benchmark that starts another
interpreter (a pyenv shim, a venv whose `site` loads .pth files), or compiles every module at each
start (PYTHONDONTWRITEBYTECODE), measures something no user sees: up to 70 ms of a 9-device
`groups`. So: Debian's python when it can import click and rich (else the running one, said in
the header), this checkout's `src/` first on the path, bytecode compiled once into a private cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
DEBIAN_PYTHON = "/usr/bin/python3"


def _can_run_vfiokit(python: str) -> bool:
    try:
        done = subprocess.run([python, "-c", "import click, rich"], capture_output=True, timeout=30, check=False)
    except OSError:
        return False
    return done.returncode == 0


def interpreter(chosen: str | None = None) -> str:
    """`chosen`, else Debian's python when it has click and rich, else this one."""
    if chosen:
        return chosen
    return DEBIAN_PYTHON if _can_run_vfiokit(DEBIAN_PYTHON) else sys.executable


def environment(python: str, cache: Path) -> dict[str, str]:
    """The environment of every timed run: `src/` on the path, bytecode read from `cache`, which
    is filled here first (by `python` itself: the cache's file names carry its version)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(SRC), PYTHONPYCACHEPREFIX=str(cache), LC_ALL="C.UTF-8")
    subprocess.run([python, "-m", "compileall", "-q", str(SRC)], env=env, check=True, stdout=subprocess.DEVNULL)
    return env
