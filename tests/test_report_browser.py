"""`vfiokit report` opened in a real browser (Debian's chromium, headless): what a user sees.

Each state is chosen with the page's URL fragment, which is what a click on a device or on the
override switch sets; `--dump-dom` then gives the DOM after the page's script drew it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from tests.browser import dump_dom, parse, print_pdf, screenshot
from tests.conftest import cli
from tests.test_simulate import article_listing

B550 = "asus-tuf-b550-plus"
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def b550_page(tmp_path_factory) -> Path:
    page = tmp_path_factory.mktemp("report") / "b550.html"
    r = cli("report", "--sample", B550, "-o", str(page))
    assert r.code == 0, r.err
    return page


def _boxes(dom):
    """The tree's device boxes: address -> (group shown, background colour, box)."""
    tree = dom.find("main", id="tree")
    out = {}
    for box in tree.find_all("div", cls="dev"):
        addr = box.attrs["data-address"]
        assert addr not in out, f"{addr} drawn twice"
        out[addr] = (box.attrs.get("data-group"), box.style().get("background"), box)
    return out


def _groups_shown(boxes) -> dict[int, list[str]]:
    groups = defaultdict(list)
    for addr, (group, _, _) in boxes.items():
        if group:
            groups[int(group)].append(addr[5:])
    return {n: sorted(v) for n, v in groups.items()}


def test_every_device_once_and_one_colour_per_group(b550_page):
    dom = parse(dump_dom(b550_page))
    assert dom.find("body").attrs.get("data-ready") == "1"
    boxes = _boxes(dom)
    data = cli("groups", "--sample", B550, "--json").out
    addresses = re.findall(r'"address": "([0-9a-f:.]+)"', data)
    assert sorted(boxes) == sorted(set(addresses))  # every device, once each (the parser refuses twice)
    rows = dom.find("table", id="table").find_all("tr")[1:]
    assert sorted(r.attrs["data-address"] for r in rows) == sorted(boxes)
    colour_of_group = defaultdict(set)
    for group, colour, _ in boxes.values():
        if group:
            colour_of_group[group].add(colour)
    assert all(len(c) == 1 for c in colour_of_group.values()), colour_of_group
    colours = [next(iter(c)) for c in colour_of_group.values()]
    assert len(set(colours)) == len(colours), "two groups share a colour"
    assert len(colours) == 22
    # The tree: the Marvell controller sits below downstream port 03:03.0, itself below the switch.
    marvell = boxes["0000:07:00.0"][2]
    above = []
    node = marvell.parent
    while node is not None:
        if "dev" in node.classes:
            above.append(node.attrs["data-address"])
        node = node.parent
    assert above == ["0000:03:03.0", "0000:02:00.2", "0000:00:01.2"]


def test_marvell_is_unsafe_and_names_the_gpu_and_the_nics(b550_page):
    dom = parse(dump_dom(b550_page, "device=07:00.0"))
    box = _boxes(dom)["0000:07:00.0"][2]
    assert box.find("span", cls="verdict").text() == "unsafe"
    assert "selected" in box.classes
    details = dom.find("aside", id="details").text()
    assert "Verdict: unsafe" in details
    leaving = dom.find("aside", id="details").find("ul").text()
    for name in ("GM206GL [Quadro M2000]", "RTL8111/8168/8411", "RTL8125 2.5GbE"):
        assert name in leaving
    assert "the host needs it: the display" in leaving and "the host needs it: the network" in leaving


def test_override_switch_gives_the_articles_second_listing(b550_page):
    today = _groups_shown(_boxes(parse(dump_dom(b550_page))))
    assert len(today[15]) == 16
    dom = parse(dump_dom(b550_page, "override=downstream,multifunction"))
    assert dom.find("body").attrs["data-view"] == "downstream,multifunction"
    shown = _groups_shown(_boxes(dom))
    want = article_listing("article-b550-with-override.txt")
    assert {n: shown[n] for n in want} == want
    # the one hardware group the override cuts is outlined, and said in words
    outlined = {a[5:] for a, (_, _, box) in _boxes(dom).items() if "assumed" in box.classes}
    assert outlined == set(today[15])
    marvell = _boxes(dom)["0000:07:00.0"][2]
    assert marvell.find("span", cls="verdict").text() == "today: unsafe"  # check judges today's groups
    status = dom.find("section", id="status").text()
    assert "Isolation assumed, not enforced" in status and "group 15 splits into 16 groups" in status
    table = {r.attrs["data-address"][5:]: r.find("td").text() for r in dom.find("table", id="table").find_all("tr")[1:]}
    assert all(table[a] == str(n) for n, members in want.items() for a in members)


def test_alone_suggestion_redraws_the_groups(b550_page):
    dom = parse(dump_dom(b550_page, "alone=07:00.0"))
    status = dom.find("section", id="status").text()
    assert "pcie_acs_override=id:1022:43e9,id:1022:43ea" in status
    shown = _groups_shown(_boxes(dom))
    assert ["07:00.0"] in shown.values()


def test_listing_without_topology_shows_groups_alone(tmp_path):
    page = tmp_path / "listing.html"
    r = cli("report", "--listing", str(FIXTURES / "article-b550-groups.txt"), "-o", str(page))
    assert r.code == 0, r.err
    dom = parse(dump_dom(page))
    assert "does not say which bridge each device sits behind" in dom.find("main", id="tree").text()
    sections = dom.find("main", id="tree").find_all("section", cls="grp")
    assert [s.attrs["aria-label"] for s in sections][:3] == ["IOMMU group 0", "IOMMU group 1", "IOMMU group 14"]
    assert _groups_shown(_boxes(dom)) == article_listing("article-b550-groups.txt")


def test_page_loads_nothing_from_the_network(b550_page):
    dom_text = dump_dom(b550_page, "device=07:00.0")
    for text in (b550_page.read_text(), dom_text):
        assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
        assert not re.search(r"url\(\s*['\"]?(?:https?:)?//|@import", text, re.I)


def test_prints_on_a4_and_screenshots(b550_page, tmp_path):
    pdf = print_pdf(b550_page, tmp_path / "b550.pdf").read_bytes()
    boxes = {tuple(round(float(x)) for x in m.split()) for m in re.findall(rb"/MediaBox\s*\[([^\]]+)\]", pdf)}
    assert boxes == {(0, 0, 595, 842)}  # A4 in points: the print CSS asks for it
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 2  # the tree, then the table on its own page
    png = screenshot(b550_page, tmp_path / "b550.png", "device=07:00.0").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 1400
