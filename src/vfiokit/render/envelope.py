"""The versioned JSON envelope every `--json` output uses.

Stable contract: `schema` is bumped only on incompatible changes; readers ignore unknown keys.
"""

from __future__ import annotations

import json
from typing import Any

from vfiokit import __version__

SCHEMA = 1


def envelope(kind: str, source: str, notes: tuple[str, ...] | list[str], **body: Any) -> str:
    data = {"vfiokit": __version__, "schema": SCHEMA, "kind": kind, "source": source,
            "notes": list(notes), **body}
    return json.dumps(data, indent=2) + "\n"
