"""Every output that is not of this host says so in its first line (issue 12): a sample shown after
`vfiokit groups` found no IOMMU was taken for the machine itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import cli
from vfiokit.sources import samples

B550 = "asus-tuf-b550-plus"
LISTING = Path(__file__).parent / "fixtures" / "listings" / "07-gigabyte-b550-aorus-pro-r9-3900x.txt"


def test_check_on_the_sample_names_the_sample_first():
    r = cli("check", "07:00.0", "--sample", B550)
    first, second = r.out.splitlines()[:2]
    assert first == f"sample {B550} (not this host)"
    assert second.startswith("Verdict: unsafe")


def test_groups_and_simulate_on_the_sample_name_it_first_and_json_keeps_the_source():
    assert cli("groups", "--sample", B550).out.splitlines()[0] == f"sample {B550} (not this host)"
    assert cli("simulate", "--sample", B550).out.splitlines()[0] == f"sample {B550} (not this host)"
    assert json.loads(cli("groups", "--sample", B550, "--json").out)["source"] == f"sample {B550}"


def test_seed_format_stays_the_articles_bytes_and_names_the_source_on_stderr():
    r = cli("groups", "--sample", B550, "--format", "seed")
    assert r.out.startswith("IOMMU Group 0")
    assert f"sample {B550} (not this host)" in r.err


def test_a_snapshot_says_when_and_on_which_host_it_was_taken(tmp_path):
    snap = tmp_path / "host.json"
    raw = samples.load_raw(B550)  # a bundled sample is a snapshot file with a description
    raw["captured"]["at"] = "2026-11-30T08:15:00+00:00"
    raw["host"]["hostname"] = "pve1"
    snap.write_text(json.dumps(raw))
    r = cli("groups", "--snapshot", str(snap))
    assert r.out.splitlines()[0] == f"snapshot {snap} taken 2026-11-30 on pve1"
    assert json.loads(cli("groups", "--snapshot", str(snap), "--json").out)["source"] == \
        f"snapshot {snap} taken 2026-11-30 on pve1"


def test_a_listing_is_named_by_its_file(tmp_path):
    post = tmp_path / "post.txt"
    shutil.copy(LISTING, post)
    r = cli("groups", "--listing", str(post))
    assert r.out.splitlines()[0] == f"listing {post}"
    r = cli("check", "05:00.0", "--listing", str(post))
    assert r.out.splitlines()[0] == f"listing {post}"
