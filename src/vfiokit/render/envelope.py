"""The versioned JSON envelope every `--json` output uses.

Stable contract: `schema` is bumped only on incompatible changes; readers ignore unknown keys.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from vfiokit import __version__

SCHEMA = 1


def dumps(data: dict[str, Any]) -> str:
    """Indented for a person on a terminal; one line for a program, through json's C encoder
    (`indent` makes json fall back to its pure-Python encoder: 4x slower on 50,000 devices)."""
    if sys.stdout.isatty():
        return json.dumps(data, indent=2) + "\n"
    return json.dumps(data) + "\n"


def envelope(kind: str, source: str, notes: tuple[str, ...] | list[str], **body: Any) -> str:
    data = {"vfiokit": __version__, "schema": SCHEMA, "kind": kind, "source": source,
            "notes": list(notes), **body}
    return dumps(data)


def error_envelope(code: int, name: str, message: str, hint: str | None, fields: dict[str, Any]) -> str:
    """What `--json` prints on stdout when the command fails: `kind` "error", the exit `code` and its
    `name`, the `message` (the stderr line), the `hint`, and the key it failed on (file, line, device)."""
    data = {"vfiokit": __version__, "schema": SCHEMA, "kind": "error", "code": code, "name": name,
            "message": message, "hint": hint, **fields}
    return dumps(data)
