"""`/etc/pve/mapping/pci.cfg` read as Proxmox reads it: pve-common PVE::SectionConfig parse_config
with pve-guest-common PVE::Mapping::PCI's header and `$map_fmt`. The fixtures are written here."""

from __future__ import annotations

import re

import pytest

from vfiokit.errors import BadInput
from vfiokit.formats import pve_mapping as pm

GPU = "id=10de:1c82,node=pve1,path=0000:01:00"
NIC = "id=8086:1539,node=pve1,path=0000:05:00.0"


def test_a_blank_line_ends_a_section_and_a_map_line_after_it_belongs_to_no_mapping():
    # SectionConfig parse_config: the property loop is `while ($line = $nextline->())`, so an empty
    # line ends it; back in the outer loop, an indented line is no section header ("ignore config
    # line"). The GPU below is in no mapping for Proxmox, so none for vfiokit.
    text = f"nic\n\tmap {NIC}\n\n\tmap {GPU}\n"
    with pytest.raises(BadInput, match=r"pci\.cfg:4: 'map .*' belongs to no mapping"):
        pm.parse_mapping_cfg(text, "pci.cfg")
    assert pm.parse_mapping_cfg(text, strict=False) == {"nic": [NIC]}
    assert pm.paths_on_node(pm.parse_mapping_cfg(text, strict=False), "pve1") == {"nic": ["0000:05:00.0"]}


def test_whitespace_before_and_between_key_and_value_may_be_tabs():
    # The property line is `^\s+(\S+)(\s+(.*\S))?\s*$`: a tab is whitespace on either side of the key.
    text = f"gpu\n\tmap\t{GPU}\n  map  {NIC}  \n\tdescription\tTwo  words\n"
    assert pm.parse_mapping_cfg(text) == {"gpu": [GPU, NIC]}


def test_a_header_needs_an_empty_line_before_it():
    # Inside a section a non-indented line is no property line: SectionConfig ignores it, and the
    # map lines after it still belong to the section above.
    text = f"gpu\n\tmap {GPU}\nnic\n\tmap {NIC}\n"
    with pytest.raises(BadInput, match=r"pci\.cfg:3: 'nic' is not a property line of mapping 'gpu'"):
        pm.parse_mapping_cfg(text, "pci.cfg")
    assert pm.parse_mapping_cfg(text, strict=False) == {"gpu": [GPU, NIC]}


def test_comments_anywhere_and_the_last_section_of_an_id_wins():
    # $nextline skips `^\s*#` lines without ending a section; `$ids->{$sectionId} = $config` keeps
    # the last section of a repeated id.
    text = f"# mappings\ngpu\n\t# first card\n\tmap {GPU}\n\nnic\n\tmap {NIC}\n\ngpu\n\tmap {NIC}\n"
    assert pm.parse_mapping_cfg(text) == {"nic": [NIC], "gpu": [NIC]}


@pytest.mark.parametrize("entry, message", [
    ("id=10de:1c82,node=pve1,path=01:00.0", "path: value does not match"),  # the domain is required
    ("id=10de:1c82,node=pve1", "path: property is missing"),
    ("id=10de:1c82, node=pve1,path=0000:01:00.0", "invalid key in comma-separated list property: ' node'"),
    ("id=10de:1c82,node=pve1,path=0000:01:00.0,colour=red", "invalid key"),
    ("id=10de:1c82,node=pve1,node=pve2,path=0000:01:00.0", "duplicate key"),
    ("0000:01:00.0,id=10de:1c82,node=pve1", "'0000:01:00.0': expected key=value"),
])
def test_a_map_entry_outside_map_fmt_is_dropped(entry, message):
    # SectionConfig check_value validates each `map` item against $map_fmt (PVE/Mapping/PCI.pm);
    # one that fails is warned about and not kept ("unable to parse value of 'map'").
    text = f"gpu\n\tmap {entry}\n\tmap {NIC}\n"
    with pytest.raises(BadInput, match=r"pci\.cfg:2: mapping 'gpu': map: " + re.escape(message)):
        pm.parse_mapping_cfg(text, "pci.cfg")
    assert pm.parse_mapping_cfg(text, strict=False) == {"gpu": [NIC]}


def test_an_invalid_id_skips_its_section_and_unknown_properties_are_ignored():
    # parse_section_header: pve_verify_configid fails -> the whole section is skipped.
    text = f"9gpu\n\tmap {GPU}\n\nnic\n\tcolour red\n\tmap {NIC}\n\tmdev 1\n"
    with pytest.raises(BadInput, match=r"pci\.cfg:1: invalid configuration ID '9gpu'"):
        pm.parse_mapping_cfg(text, "pci.cfg")
    with pytest.raises(BadInput, match=r"pci\.cfg:5: mapping 'nic': unexpected property 'colour'"):
        pm.parse_mapping_cfg(text.replace("9gpu", "gpu"), "pci.cfg")
    assert pm.parse_mapping_cfg(text, strict=False) == {"nic": [NIC]}
