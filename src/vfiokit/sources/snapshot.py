"""Snapshot files: a raw capture saved as JSON, to attach to a forum post or keep before a BIOS
update. Loading one gives exactly the model of the live tree it was taken from."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from vfiokit.errors import BadInput
from vfiokit.model import Topology
from vfiokit.sources import capture as cap


def dumps(raw: dict[str, Any]) -> str:
    """The snapshot text: stable key order, one device per few lines, diff-friendly."""
    return json.dumps(raw, indent=1, sort_keys=True) + "\n"


def load_raw(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a snapshot file; BadInput names the file and what is wrong with it."""
    try:
        # utf-8-sig: a snapshot opened and saved in Notepad starts with a byte order mark.
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as e:
        raise BadInput(f"{path}: cannot read snapshot ({e.strerror})", file=path) from None
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not a vfiokit snapshot (not UTF-8 text)", file=path) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        # A cut-off file fails at its very end, or inside a string that never closes.
        cut = e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string")
        what = "truncated" if cut else "not valid JSON"
        raise BadInput(f"{path}: line {e.lineno}: snapshot is {what} ({e.msg})", file=path, line=e.lineno) from None
    except RecursionError:
        raise BadInput(f"{path}: not a vfiokit snapshot (JSON nested too deeply)", file=path) from None
    except ValueError:  # an integer of more than 4,300 digits (CPython's int_max_str_digits)
        raise BadInput(f"{path}: not a vfiokit snapshot (a number too long to read)", file=path) from None
    return cap.validate(raw, str(path))


def load(path: str | os.PathLike[str]) -> Topology:
    raw = load_raw(path)
    top = cap.build_topology(raw, f"snapshot {path}")
    return dataclasses.replace(top, source=describe(path, raw))


def describe(path: str | os.PathLike[str], raw: Mapping[str, Any]) -> str:
    """`snapshot host.json taken 2026-11-30 on pve1`: when and where, so a snapshot of another
    day or another node is not read as this host now. Parts the file does not hold are left out."""
    at = (raw.get("captured") or {}).get("at")
    host = (raw.get("host") or {}).get("hostname")
    when = f" taken {at[:10]}" if isinstance(at, str) and at else ""
    where = f" on {host}" if isinstance(host, str) and host else ""
    return f"snapshot {path}{when}{where}"
