"""`vfiokit report` without a browser: the page holds exactly the CLI's documents, loads nothing
from the network, stays small; and `groups --format markdown` reads back as the same groups."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import cli
from vfiokit.model import PciAddress
from vfiokit.render.report import ALONE_AUTO_LIMIT, alone_candidates, decode_payload
from vfiokit.sources import listing, samples

B550 = "asus-tuf-b550-plus"
FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def _payload(page: str) -> dict:
    m = re.search(r'<script type="application/octet-stream" id="vfiokit-data">([^<]*)</script>', page)
    assert m, "the page embeds no data"
    return decode_payload(m[1])


def _json(*args: str) -> dict:
    r = cli(*args, "--json")
    assert r.code in (0, 10, 11), r.err  # check's exit code is its verdict
    return json.loads(r.out)


def test_page_embeds_the_documents_the_cli_prints():
    r = cli("report", "--sample", B550, "-o", "-")
    assert r.code == 0, r.err
    data = _payload(r.out)
    assert data["groups"] == _json("groups", "--sample", B550)
    assert data["checks"]["0000:07:00.0"] == _json("check", "07:00.0", "--sample", B550)
    assert data["checks"]["0000:07:00.0"]["verdict"] == "unsafe"
    for option in ("none", "downstream", "multifunction", "downstream,multifunction"):
        assert data["simulate"][option] == _json("simulate", "--sample", B550, "--acs-override", option)
    alone = [str(a) for a in alone_candidates(samples.load(B550))]
    assert data["alone"] == _json("simulate", "--sample", B550, "--acs-override", "none",
                                  *[x for a in alone for x in ("--alone", a)])
    # every suggested override has its prediction, so the page never predicts on its own
    assert {a["override"] for a in data["alone"]["alone"] if a["override"]} <= set(data["simulate"])
    bridges = {d["address"] for g in data["groups"]["groups"] for d in g["devices"] if "bridge" in d["flags"]}
    assert not bridges & set(data["checks"])  # check does not judge bridges; the page says so instead
    meta = data["meta"]
    assert (meta["hostname"], meta["kernel"], meta["tree_known"]) == ("pve", "5.11.22-4-pve", True)
    assert meta["cmdline"].startswith("BOOT_IMAGE=/boot/vmlinuz-5.11.22-4-pve")


def test_the_same_host_gives_the_same_bytes(tmp_path):
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    for p in (a, b):
        assert cli("report", "--sample", B550, "-o", str(p)).code == 0
    assert a.read_bytes() == b.read_bytes()
    assert "wrote" in cli("report", "--sample", B550, "-o", str(a)).err


def test_page_is_self_contained_and_small_for_200_devices(tmp_path):
    from bench_simulate import machine
    from vfiokit.analyses.grouping import predict_groups
    from vfiokit.analyses.simulation import with_groups
    from vfiokit.pciids import PciIds
    from vfiokit.render.report import collect, report_html
    from vfiokit.sources.capture import build_topology
    from vfiokit.sources.synthetic import capture_of

    bare = build_topology(capture_of(machine(200)), "synthetic 200-function host")
    top = with_groups(bare, predict_groups(bare, None))
    assert len(top.devices) >= 200
    page = report_html(collect(top, PciIds.system()))
    assert len(page.encode()) < 300_000
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    # more candidates than the automatic limit: the page says how to ask for a device instead
    data = _payload(page)
    assert len(alone_candidates(top)) > ALONE_AUTO_LIMIT
    assert data["alone"]["alone"] == [] and data["meta"]["alone_skipped"] == len(alone_candidates(top))


def test_report_alone_names_the_devices_and_bad_input_is_one_line(tmp_path):
    r = cli("report", "--sample", B550, "--alone", "07:00.0", "-o", "-")
    assert r.code == 0, r.err
    (advice,) = _payload(r.out)["alone"]["alone"]
    assert advice["override"] == "id:1022:43e9,id:1022:43ea"
    r = cli("report", "--sample", B550, "--alone", "09:00.0", "-o", str(tmp_path / "x.html"))
    assert (r.code, r.err.strip()) == (4, "vfiokit: error: no PCI device at 0000:09:00.0 in sample asus-tuf-b550-plus")
    assert not (tmp_path / "x.html").exists()
    r = cli("report", "--sample", B550, "-o", str(tmp_path))
    assert r.code == 7 and r.err.count("\n") == 1 and "is a folder" in r.err  # WRITE_FAILED, as snapshot -o


# --- groups --format markdown ---------------------------------------------------------------------

def _groups(top) -> dict[int, list[str]]:
    return {g.number: [str(a) for a in g.members] for g in top.groups}


#: Samples of a host booted with its IOMMU off have no groups to write (groups exits 5 on them).
WITH_GROUPS = [n for n in samples.names() if samples.load(n).groups is not None]


def test_most_samples_have_groups_to_round_trip():
    assert len(WITH_GROUPS) >= 20 and "asus-tuf-b550-plus" in WITH_GROUPS


@pytest.mark.parametrize("name", WITH_GROUPS)
def test_markdown_reads_back_as_the_same_groups(name, tmp_path):
    r = cli("groups", "--sample", name, "--format", "markdown")
    assert r.code == 0, r.err
    assert r.out.startswith("<details>\n<summary>") and r.out.rstrip().endswith("</details>")
    path = tmp_path / "pasted.md"
    path.write_text(r.out)
    back, top = listing.load(str(path)), samples.load(name)
    assert _groups(back) == _groups(top)
    assert {d.address: (d.driver, d.ids, d.class_id, d.revision) for d in back.devices} == \
           {d.address: (d.driver or "", d.ids, d.class_id, d.revision or None) for d in top.devices}
    assert (back.host.cmdline, back.host.kernel_release) == (top.host.cmdline, top.host.kernel_release)
    assert not back.group_unknown  # devices in no group come back as in no group


def test_markdown_row_matcher_reads_escaped_pipes_and_unknowns():
    text = ("| Group | Address | Device (lspci -nn) | Driver | Notes |\n|---:|---|---|---|---|\n"
            "| 3 | 0000:01:00.0 | Ethernet controller [0200]: Acme A\\|B NIC [abcd:1234] (rev 02) | `e1000e` | x |\n"
            "| 3 | 0000:01:00.1 |  | ? |  |\n"
            "| none | 0000:00:00.2 | IOMMU [0806]: Acme IOMMU [abcd:0001] | — |  |\n")
    read = listing.parse(text, "pasted")
    top = read.topology
    nic, other, iommu = (top.device(PciAddress.parse(a)) for a in ("01:00.0", "01:00.1", "00:00.2"))
    assert (nic.device_name, nic.ids, nic.revision, nic.driver) == ("Acme A|B NIC", "abcd:1234", 2, "e1000e")
    assert (other.class_code, other.iommu_group) == (None, 3)
    assert (iommu.iommu_group, iommu.driver) == (None, "")
    assert _groups(top) == {3: ["0000:01:00.0", "0000:01:00.1"]}
    assert not top.group_unknown and not read.skipped


def test_markdown_and_json_are_one_output_each():
    r = cli("groups", "--sample", B550, "--format", "markdown", "--json")
    assert r.code == 2 and "--format markdown and --json cannot be combined" in r.err


def test_a_command_line_naming_devices_is_read_as_the_command_line():
    text = ("$ cat /proc/cmdline\nquiet intel_iommu=on pci=disable_acs_redir=0000:00:02.0\n"
            "IOMMU Group 1\n\t00:02.0 PCI bridge [0604]: Intel Corporation Device [8086:0001]\n")
    read = listing.parse(text, "pasted")
    assert read.topology.host.cmdline == "quiet intel_iommu=on pci=disable_acs_redir=0000:00:02.0"
    assert [str(a) for a in read.topology.by_address] == ["0000:00:02.0"]
