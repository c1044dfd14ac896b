"""`/var/backups/vfiokit/bound.json`: which functions `vfiokit bind` moved to vfio-pci and the
driver each had before, so that `vfiokit unbind` gives it back and says so. Pure: no I/O.

    {"format": "vfiokit-bound", "version": 1, "bound": {"0000:04:00.0": {"driver": "nouveau"}}}

`driver` is null for a function that had no driver.
"""

from __future__ import annotations

from vfiokit.errors import BadInput

PATH = "/var/backups/vfiokit/bound.json"
FORMAT = "vfiokit-bound"


def parse(text: str | None, where: str = PATH) -> dict[str, str | None]:
    """Address -> previous driver; {} for no file."""
    if text is None:
        return {}
    import json  # here: most hosts have no record, and `groups` reads this on every run

    try:
        data = json.loads(text)
        bound = data["bound"] if data.get("format") == FORMAT else None
        if not isinstance(bound, dict):
            raise ValueError
        out = {}
        for addr, entry in bound.items():
            drv = entry.get("driver") if isinstance(entry, dict) else ""
            if (drv is not None and not isinstance(drv, str)) or drv == "":
                raise ValueError
            out[str(addr)] = drv
        return out
    except (ValueError, AttributeError, TypeError):
        raise BadInput(f"{where}: not a vfiokit bind record (move it away to start afresh)", file=where) from None


def serialize(bound: dict[str, str | None]) -> str | None:
    """The file's text; None when nothing is bound (the file goes)."""
    if not bound:
        return None
    import json

    return json.dumps({"format": FORMAT, "version": 1,
                       "bound": {a: {"driver": bound[a]} for a in sorted(bound)}}, indent=2) + "\n"
