"""Bundled sample machines: snapshot files shipped in the package.

`vfiokit/samples/<name>.json` are machines rebuilt from what people published;
`vfiokit/samples/lab/<name>.json`, named `lab-<name>`, are real kernels' trees captured by the QEMU
lab (`python -m lab regen`) under Debian 12's kernel 6.1; `vfiokit/samples/lab/<K>/<name>.json`,
named `lab-<K>-<name>`, the same machines under kernel K. Each is a snapshot with a `sample` object: `name`, `title`,
`description` (where it comes from, and what was inferred rather than seen).
"""

from __future__ import annotations

import os
from typing import Any

from vfiokit import package_data
from vfiokit.errors import BadInput
from vfiokit.model import Topology
from vfiokit.sources import capture as cap
from vfiokit.sources import snapshot

FOLDER = package_data.path("samples")


def _json_files(folder: str) -> list[tuple[str, str]]:
    with os.scandir(folder) as entries:
        return [(e.name[:-5], e.path) for e in entries if e.name.endswith(".json")]


def _files() -> dict[str, str]:
    found = dict(_json_files(FOLDER))
    lab = os.path.join(FOLDER, "lab")
    found.update((f"lab-{name}", path) for name, path in _json_files(lab))
    with os.scandir(lab) as entries:
        kernels = [e for e in entries if e.is_dir()]
    for kernel in kernels:
        found.update((f"lab-{kernel.name}-{name}", path) for name, path in _json_files(kernel.path))
    return found


def names() -> list[str]:
    return sorted(_files())


def load_raw(name: str) -> dict[str, Any]:
    path = _files().get(name)
    if path is None:
        # The nearest few names, not all of them on one line: names sharing the typed prefix first
        # (`asus-tuf-b550` -> `asus-tuf-b550-plus`), then the closest spellings.
        import difflib  # here: only a misspelt name pays for it

        known = names()
        near = [n for n in known if n.startswith(name)] if name else []
        near += [n for n in difflib.get_close_matches(name, known, n=3, cutoff=0.5) if n not in near]
        said = f"did you mean {' or '.join(near[:3])}? " if near else ""
        raise BadInput(f"no sample named '{name}'", hint=f"{said}'vfiokit samples' lists all {len(known)}")
    return snapshot.load_raw(path)


def load(name: str) -> Topology:
    return cap.build_topology(load_raw(name), f"sample {name}")


def describe(name: str) -> dict[str, str]:
    meta = load_raw(name).get("sample") or {}
    return {"name": name, "title": meta.get("title", ""), "description": meta.get("description", "")}
