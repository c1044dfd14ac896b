"""The provenance header of a bundled board listing: `# key: value` lines above the listing.

A corpus file (`vfiokit/boards/NAME.txt`) starts with `# vfiokit-board: NAME`, then one line per
fact, as its author stated it or as it was inferred (the `inferred:` line says which)::

    # vfiokit-board: gigabyte-b550-aorus-pro
    # board: Gigabyte B550 Aorus Pro (Rev 1), newest BIOS
    # vendor: Gigabyte
    # chipset: AMD B550
    # cpu: AMD Ryzen 9 3900X
    # kernel: unknown
    # cmdline: unknown
    # acs_override: no - the post says 'no ACS patch'
    # date: 2022-12-17
    # groups: 25
    # url: https://github.com/...
    # stated: / inferred: / kept:   (free text, optional)

The listing reader skips these lines as comments, so the whole file is also a plain listing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vfiokit.errors import BadInput

MAGIC = "vfiokit-board"
REQUIRED = ("board", "vendor", "chipset", "cpu", "kernel", "cmdline", "acs_override", "date", "groups", "url")
_LINE = re.compile(r"^#\s*(?P<key>[a-z_-]+):\s?(?P<value>.*)$")


@dataclass(frozen=True)
class BoardHeader:
    """Where a bundled listing comes from and what its machine was. "unknown" when not stated."""

    name: str
    board: str
    vendor: str
    chipset: str
    cpu: str
    kernel: str
    cmdline: str
    #: The header's text ("yes - ...", "no (not mentioned)", "unknown").
    acs_override: str
    date: str
    #: Number of IOMMU groups the listing shows, counted when it was added.
    groups: int
    url: str
    stated: str = ""
    inferred: str = ""
    kept: str = ""

    @property
    def override_on(self) -> bool | None:
        """True/False when the header says yes/no, None when unknown."""
        word = self.acs_override.split(None, 1)[0].strip(" -(").lower() if self.acs_override else ""
        return {"yes": True, "no": False}.get(word)


def parse(text: str, origin: str) -> BoardHeader:
    """The header at the top of `text`; BadInput naming `origin` and the line when it is malformed."""
    fields: dict[str, str] = {}
    lines = text.splitlines()
    if not lines or not lines[0].startswith(f"# {MAGIC}:"):
        raise BadInput(f"{origin}: line 1: not a board listing (expected '# {MAGIC}: NAME')")
    for number, line in enumerate(lines, 1):
        if not line.startswith("#"):
            break
        m = _LINE.match(line)
        if not m:
            raise BadInput(f"{origin}: line {number}: not a '# key: value' header line")
        key = m["key"].replace("-", "_")
        # Multi-line values (a long 'stated:') repeat the key; they join into one text.
        fields[key] = f"{fields[key]} {m['value']}" if key in fields else m["value"]
    missing = [k for k in REQUIRED if not fields.get(k)]
    if missing:
        raise BadInput(f"{origin}: header lacks {', '.join(missing)}")
    try:
        groups = int(fields["groups"])
    except ValueError:
        raise BadInput(f"{origin}: header 'groups: {fields['groups']}' is not a number") from None
    return BoardHeader(
        name=fields.pop(MAGIC.replace("-", "_")), groups=groups,
        **{k: fields.get(k, "") for k in (*REQUIRED, "stated", "inferred", "kept") if k != "groups"})
