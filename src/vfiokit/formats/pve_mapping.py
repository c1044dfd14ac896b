"""The cluster's PCI mappings file `/etc/pve/mapping/pci.cfg` (pve-guest-common
PVE/Mapping/PCI.pm, a PVE::SectionConfig file), read only. Pure: no I/O."""

from __future__ import annotations

import re

from vfiokit.errors import BadInput
from vfiokit.formats.pve_hostpci import CONFIGID_RE

# PVE::SectionConfig parse_config and PVE::Mapping::PCI parse_section_header; Perl's `\s` and
# `\S` there are ASCII (re.ASCII).
_HEADER_RE = re.compile(r"(\S+)\s*", re.ASCII)
_PROPERTY_RE = re.compile(r"\s+(\S+)(?:\s+(.*\S))?\s*", re.ASCII)
_COMMENT_RE = re.compile(r"\s*#", re.ASCII)
# $map_fmt of PVE/Mapping/PCI.pm: each key's pattern, and which keys an entry must have.
_PCI_RE = r"[a-f0-9]{4,}:[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?"
_MAP_KEYS = {
    "node": re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?"),  # pve_verify_node_name
    "id": re.compile(r"[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}"),
    "subsystem-id": re.compile(r"[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}"),
    "path": re.compile(rf"(?:{_PCI_RE};)*{_PCI_RE}"),
    "iommugroup": re.compile(r"[+-]?\d+"),
    "description": re.compile(r".{0,4096}", re.DOTALL),
}
_MAP_REQUIRED = ("node", "id", "path")
#: The properties a pci mapping section may have (PVE::Mapping::PCI options); any other is refused
#: by SectionConfig ("unexpected property").
_SECTION_KEYS = ("description", "mdev", "live-migration-capable", "map")


def check_map_entry(entry: str, where: str = "map") -> dict[str, str]:
    """One `map` value checked against `$map_fmt` as PVE::JSONSchema::parse_property_string does
    (parts not trimmed, every key known, node/id/path present, each value matching its pattern);
    `BadInput` naming `where` otherwise. Proxmox drops an entry that fails (SectionConfig warns
    "unable to parse value of 'map'")."""
    out: dict[str, str] = {}
    for part in entry.split(","):
        if re.fullmatch(r"\s*", part, re.ASCII):
            continue
        key, eq, value = part.partition("=")
        if not eq or not key or not value:
            raise BadInput(f"{where}: '{part}': expected key=value (the map format has no default key)")
        if key not in _MAP_KEYS:
            raise BadInput(f"{where}: invalid key in comma-separated list property: {key!r}")
        if key in out:
            raise BadInput(f"{where}: duplicate key in comma-separated list property: {key}")
        if not _MAP_KEYS[key].fullmatch(value):
            raise BadInput(f"{where}: {key}: value does not match the regex pattern (got '{value}')")
        out[key] = value
    missing = [k for k in _MAP_REQUIRED if k not in out]
    if missing:
        raise BadInput(f"{where}: {', '.join(missing)}: property is missing and it is not optional")
    return out


def parse_mapping_cfg(text: str, where: str = "mapping/pci.cfg", strict: bool = True) -> dict[str, list[str]]:
    """Each mapping id and its `map` entries (property strings), read as PVE::SectionConfig's
    parse_config reads pve-guest-common's PVE/Mapping/PCI.pm file.

    A section is a header line `<id>`, then `key value` lines that start with whitespace (a space or
    a tab, and any whitespace between key and value); the array `map` is one `map ...` line per
    entry. An empty line ends the section: a property line after it belongs to no mapping, and a
    header line must follow an empty line (inside a section it is an ignored line). Comment lines
    (`#`, even indented) are skipped anywhere. A repeated id keeps the last section.

    Where SectionConfig warns and ignores (a line it cannot place, an invalid id, an unknown or
    repeated property, a `map` entry that fails `$map_fmt`), `strict=True` raises `BadInput`
    naming the line, and `strict=False` ignores it as Proxmox does.

    It stays whole to mirror SectionConfig::parse_config line for line: its two nested loops
    (sections, then a section's properties) are the grammar, and splitting them hides where a
    blank line or a header ends a section.
    """
    out: dict[str, list[str]] = {}
    # Perl's split(/\n/) keeps a "\r"; the loop below only looks at lines, so splitting at "\n" is it.
    lines = text.split("\n")
    n = 0

    def problem(message: str) -> None:
        if strict:
            raise BadInput(f"{where}:{n}: {message}", file=where, line=n)

    def next_line() -> str | None:  # SectionConfig's $nextline: skips comment lines
        nonlocal n
        while n < len(lines):
            n += 1
            if not _COMMENT_RE.match(lines[n - 1]):
                return lines[n - 1]
        return None

    while n < len(lines):
        line = next_line()
        if not line:
            continue
        header = _HEADER_RE.fullmatch(line)
        if header is None:
            problem(f"'{line.strip()}' belongs to no mapping (a property line needs a section header "
                    "above it with no empty line between; Proxmox ignores this line)")
            continue
        name = header.group(1)
        skip = not CONFIGID_RE.match(name)  # parse_section_header: pve_verify_configid
        if skip:
            problem(f"invalid configuration ID '{name}' (Proxmox skips this section)")
        entries: list[str] = []
        seen: set[str] = set()
        while (line := next_line()):
            if skip:
                continue
            m = _PROPERTY_RE.fullmatch(line)
            if m is None:
                problem(f"'{line.strip()}' is not a property line of mapping '{name}' (a new section "
                        "needs an empty line before it; Proxmox ignores this line)")
                continue
            key, value = m.groups()
            if key not in _SECTION_KEYS:
                problem(f"mapping '{name}': unexpected property '{key}'")
            elif key == "map":
                try:
                    check_map_entry(value or "", f"mapping '{name}': map")
                except BadInput as e:
                    problem(str(e))
                else:
                    entries.append(value)
            elif key in seen:
                problem(f"mapping '{name}': duplicate attribute '{key}'")
            seen.add(key)
        if not skip:
            out.pop(name, None)  # a repeated id: the last one, in its own place
            out[name] = entries
    return out


def parse_map_entry(entry: str) -> dict[str, str]:
    """`node=pve1,path=0000:01:00.0,id=10de:1c82,...` as a dict."""
    return dict(part.partition("=")[::2] for part in entry.split(",") if part)


def paths_on_node(mappings: dict[str, list[str]], node: str) -> dict[str, list[str]]:
    """For each mapping, the device paths it maps on `node` (get_node_mapping: alternatives in order)."""
    return {name: [e["path"] for e in map(parse_map_entry, entries) if e.get("node") == node and "path" in e]
            for name, entries in mappings.items()}
