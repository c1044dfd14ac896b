"""The cluster's PCI mappings file `/etc/pve/mapping/pci.cfg` (pve-guest-common
PVE/Mapping/PCI.pm, a PVE::SectionConfig file), read only. Pure: no I/O."""

from __future__ import annotations

from vfiokit.errors import BadInput


def parse_mapping_cfg(text: str, where: str = "mapping/pci.cfg", strict: bool = True) -> dict[str, list[str]]:
    """Each mapping id and its `map` entries (property strings), from the SectionConfig file
    (pve-guest-common PVE/Mapping/PCI.pm).

    A section is a header line `<id>` then indented `key value` lines; the array `map` is written
    as one `map ...` line per entry. `strict=False` skips a property outside a section instead of
    raising `BadInput`, as PVE::SectionConfig's parser ignores such a line with a warning.
    """
    out: dict[str, list[str]] = {}
    current: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            current = line.strip()
            out[current] = []
            continue
        key, _, value = line.strip().partition(" ")
        if current is None:
            if not strict:
                continue
            raise BadInput(f"{where}:{n}: property outside a section: '{line.strip()}'", file=where, line=n)
        if key == "map":
            out[current].append(value.strip())
    return out


def parse_map_entry(entry: str) -> dict[str, str]:
    """`node=pve1,path=0000:01:00.0,id=10de:1c82,...` as a dict."""
    return dict(part.partition("=")[::2] for part in entry.split(",") if part)


def paths_on_node(mappings: dict[str, list[str]], node: str) -> dict[str, list[str]]:
    """For each mapping, the device paths it maps on `node` (get_node_mapping: alternatives in order)."""
    return {name: [e["path"] for e in map(parse_map_entry, entries) if e.get("node") == node and "path" in e]
            for name, entries in mappings.items()}
