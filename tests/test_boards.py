"""The bundled boards: every listing read in full, the corpus search, and `--board` as a source."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import cli
from vfiokit.analyses.board_summary import search, siblings, summarize
from vfiokit.formats.board_header import parse
from vfiokit.sources import boards
from vfiokit.sources.listing_text import ADDRESS_TOKEN

NAMES = boards.names()


def _verdict(r) -> str:
    """The verdict: the line after the one naming the board (a board is never this host)."""
    header, verdict = r.out.splitlines()[:2]
    assert header.startswith("board "), header
    return verdict


def test_the_corpus_holds_forty_real_listings():
    assert len(NAMES) >= 40, f"only {len(NAMES)} bundled boards"


@pytest.mark.parametrize("name", NAMES)
def test_every_bundled_board_reads_whole(name):
    """Every line that holds a PCI address becomes a device, and the group count is the header's
    (counted by hand when the listing was added, independently of the reader)."""
    text = boards.text(name)
    header = parse(text, name)
    assert header.name == name
    assert header.url.startswith(("https://", "the project's seed article"))
    read = boards.read(name)
    with_address = {n for n, line in enumerate(text.splitlines(), 1)
                    if not line.startswith("#") and ADDRESS_TOKEN.search(line)}
    read_lines = set(read.lines.values())
    assert with_address - read_lines == set(), "lines holding an address were left unread"
    assert [s for s in read.skipped if not s.reason.startswith(("a comment", "a shell"))] == []
    assert len(read.topology.groups or ()) == header.groups


@pytest.mark.parametrize(("query", "must", "field"), [
    ("b550", {"gigabyte-b550-aorus-pro", "asus-tuf-gaming-b550-plus", "msi-mag-b550m-mortar",
              "asrock-b550-phantom-gaming-itx-ax-acs"}, "chipset"),
    ("x570 aorus", {"gigabyte-x570-aorus-pro-wifi", "gigabyte-x570-aorus-pro-wifi-bios-f35"}, "board"),
    ("supermicro", {"supermicro-x11scl-if", "supermicro-a2sdi-4c-hln4f"}, "vendor"),
    ("3900x", {"gigabyte-b550-aorus-pro", "gigabyte-x570-aorus-pro-wifi"}, "cpu"),
    ("Z97", {"asrock-z97-extreme4", "asrock-z97-extreme4-linux-lts"}, "chipset"),
])
def test_search_by_board_chipset_vendor_and_cpu_words(query, must, field):
    found = search(boards.headers(), query)
    names = {h.name for h in found}
    assert must <= names
    # Every hit holds every word, in the field the query is about or elsewhere in its header.
    for h in found:
        text = f"{h.name} {h.board} {h.vendor} {h.chipset} {h.cpu}".lower()
        assert all(w in text for w in query.lower().split()), h.name
    if query == "x570 aorus":
        # The B550 Aorus and the other X570 boards do not hold both words; the three listings of
        # the X570 AORUS PRO WIFI (two users, two card sets) do.
        assert names == {n for n in NAMES if n.startswith("gigabyte-x570-aorus-pro-wifi")}
        assert len(names) == 3


def test_boards_command_says_what_matters_when_buying():
    r = cli("boards", "b550", "aorus")
    assert r.code == 0, r.err
    assert r.out.splitlines()[0] == "gigabyte-b550-aorus-pro: Gigabyte B550 Aorus Pro (Rev 1), newest BIOS"
    # The RX 550 in the chipset slot shares the chipset's group with its USB, SATA and NIC; the
    # RX 6950 XT behind its own switch is alone.
    assert ("25 groups; x16 cards: GPU 04:00.0 shares group 15 with 3 other devices; "
            "GPU 08:00.0 alone (group 18)") in r.out
    assert "NIC 05:00.0 shares group 15" in r.out and "SATA 02:00.1 shares group 15" in r.out
    assert "no ACS override" in r.out
    assert "source: https://github.com/MapManagement/gpu-passthrough/blob/39eab266" in r.out


def test_boards_shows_the_override_listing_of_the_same_board():
    r = cli("boards", "tuf", "--json")
    data = json.loads(r.out)
    by_name = {b["name"]: b for b in data["boards"]}
    plain, acs = by_name["asus-tuf-gaming-b550-plus"], by_name["asus-tuf-gaming-b550-plus-acs-override"]
    assert plain["siblings"] == ["asus-tuf-gaming-b550-plus-acs-override"] and plain["override_on"] is False
    assert [g["alone"] for g in plain["gpus"]] == [False]
    assert [g["alone"] for g in acs["gpus"]] == [True] and acs["override_on"] is True


def test_boards_without_match_is_bad_input():
    r = cli("boards", "no-such-chipset-zz")
    assert r.code == 3 and "no bundled board matches 'no-such-chipset-zz'" in r.err


def test_every_board_summarises():
    every = boards.headers()
    for h in every:
        s = summarize(h, boards.load(h.name), siblings(h, every))
        assert s.groups == h.groups


# --- check on a board: the verdicts a person reading the listing gives --------------------------
# `check gpu` (a class word) is issue 17's feature: these name the GPU by its address.

def test_check_on_gigabyte_b550_aorus_pro():
    # 08:00.0 (RX 6950 XT, CPU slot) is alone in group 18: its switch ports are groups 16 and 17.
    r = cli("check", "08:00.0", "--board", "gigabyte-b550-aorus-pro")
    assert r.code == 0 and _verdict(r).startswith("Verdict: alone")
    # 04:00.0 (RX 550, chipset slot) is in group 15 with the chipset's USB, SATA and the 2.5GbE NIC.
    r = cli("check", "04:00.0", "--board", "gigabyte-b550-aorus-pro")
    assert r.code == 10, r.out
    first = _verdict(r)
    assert first.startswith("Verdict: shares, costly")
    assert all(a in first for a in ("02:00.0", "02:00.1", "05:00.0"))


def test_check_on_asus_prime_b350_plus():
    # The guest R9 390 (07:00.0) is alone in group 13; the host RX 550 (06:00.0) shares the
    # chipset's group 12 with USB, SATA and the Realtek NIC, as the author's README says.
    assert cli("check", "07:00.0", "--board", "asus-prime-b350-plus").code == 0
    r = cli("check", "06:00.0", "--board", "asus-prime-b350-plus")
    assert r.code == 10 and "03:00.0" in _verdict(r)


def test_check_on_asrock_z170_gaming_itx():
    # The GTX 960 shares group 1 only with the CPU's x16 root port 00:01.0, a bridge Proxmox
    # leaves to the host: harmless.
    r = cli("check", "01:00.0", "--board", "asrock-fatal1ty-z170-gaming-itx-ac")
    assert r.code == 0 and _verdict(r).startswith("Verdict: shares, harmless"), r.out
    assert "00:01.0: bridge, which Proxmox leaves bound to the host" in r.out


def test_check_on_the_seed_articles_board_with_and_without_override():
    # The article: "le groupe 15 contient ma carte graphique, ma carte réseau supplémentaire et mon
    # contrôleur SATA (Marvell)": passing the GPU takes the NIC 06:00.0 and the Marvell 07:00.0.
    r = cli("check", "04:00.0", "--board", "asus-tuf-gaming-b550-plus")
    assert r.code == 10 and all(a in _verdict(r) for a in ("06:00.0", "07:00.0"))
    r = cli("check", "04:00.0", "--board", "asus-tuf-gaming-b550-plus-acs-override")
    assert r.code == 0 and _verdict(r).startswith("Verdict: alone")


def test_board_is_a_source_spec_for_compare():
    r = cli("compare", "board:asus-tuf-gaming-b550-plus", "board:asus-tuf-gaming-b550-plus-acs-override")
    assert "A board asus-tuf-gaming-b550-plus" in r.out
    assert re.search(r"split: group 15 of A is now \d+ groups in B", r.out)


def test_unknown_board_is_bad_input_naming_it():
    r = cli("groups", "--board", "nope")
    assert r.code == 3 and "no bundled board named 'nope'" in r.err
    r = cli("groups", "--board", "asus-tuf-gaming-b550-plus", "--sample", "asus-tuf-b550-plus")
    assert r.code == 2 and "--sample and --board" in r.err


def test_boards_lists_every_bundled_listing():
    r = cli("boards", "--json")
    assert r.code == 0
    assert sorted(b["name"] for b in json.loads(r.out)["boards"]) == NAMES
    assert f"{len(NAMES)} of {len(NAMES)} bundled boards" in cli("boards").err


@pytest.mark.parametrize(("text", "says"), [
    ("IOMMU Group 1 01:00.0 VGA\n", "line 1: not a board listing"),
    ("# vfiokit-board: x\n# board: B\nnot a header\n", "header lacks vendor"),
    ("# vfiokit-board: x\n#board B\n", "line 2: not a '# key: value' header line"),
])
def test_a_malformed_header_is_bad_input_naming_the_line(text, says):
    from vfiokit.errors import BadInput

    with pytest.raises(BadInput, match=re.escape(says)):
        parse(text, "board x")
