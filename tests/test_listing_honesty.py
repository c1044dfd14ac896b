"""Honesty on listings (issue 16 point 5): a source without config space predicts nothing, and
says so on standard output, in the table, in --json and in `groups --predict`'s exit code; a
device reading all ones (`rev ff`) is called what it is."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import cli
from vfiokit.errors import ExitCode

FIXTURES = Path(__file__).parent / "fixtures"
B550 = str(FIXTURES / "article-b550-without-override.txt")
I350 = str(FIXTURES / "netdev-i350-rev-ff.txt")


def test_simulate_on_a_listing_says_unknown_on_stdout_not_no_group_changes():
    r = cli("simulate", "--listing", B550, "--device", "04:00.0")
    assert r.code == 0, r.err
    assert "no group changes" not in r.out
    assert "the groups with this override are unknown: this source holds no config space" in r.out
    rows = [ln.split() for ln in r.out.splitlines() if ln.strip().endswith(("43ea", "(rev a1)"))]
    assert rows and all(row[1] == "?" for row in rows)  # today's group, then `?` predicted
    assert "04:00.0: group 15 (with 15 other(s)) -> ? (unknown)" in r.out


def test_simulate_json_on_a_listing_has_no_prediction():
    data = json.loads(cli("simulate", "--listing", B550, "--device", "04:00.0", "--json").out)
    assert (data["known"], data["predicted"], data["splits"], data["changes"]) == (False, None, [], [])
    assert "no config space" in data["unknown_because"]
    assert data["current"] and data["devices"][0]["known"] is False
    assert data["devices"][0]["verdict_then"] is None


def test_groups_predict_on_a_listing_invents_nothing_and_exits_unknown():
    r = cli("groups", "--predict", "--listing", B550)
    assert r.code == ExitCode.UNKNOWN == 15
    assert "the groups cannot be predicted from this source" in r.out
    assert "predicted as group" not in r.out
    j = cli("groups", "--predict", "--listing", B550, "--json")
    assert j.code == 15
    data = json.loads(j.out)
    assert (data["known"], data["matches"], data["predicted"], data["differences"]) == (False, None, None, [])


def test_a_sample_with_config_space_still_predicts():
    r = cli("simulate", "--sample", "asus-tuf-b550-plus")
    assert r.code == 0 and "group 15 splits into 16 groups" in r.out and "are unknown" not in r.out


def test_rev_ff_is_said_to_be_powered_off_or_off_the_bus_in_groups_and_check():
    g = cli("groups", "--listing", I350)
    assert g.code == 0
    dead = [ln for ln in g.out.splitlines() if "I350" in ln]
    assert len(dead) == 2 and all("powered off or fell off the bus, often after a failed reset" in ln
                                  for ln in dead)
    flags = json.loads(cli("groups", "--listing", I350, "--json").out)["groups"][0]["devices"][0]["flags"]
    assert "reads_all_ones" in flags
    c = cli("check", "01:00.0", "--listing", I350)
    assert c.code == 0
    assert ("01:00.0 reads as all ones (rev ff): it is powered off or fell off the bus, often after a "
            "failed reset") in c.out
    healthy = cli("check", "04:00.0", "--listing", B550)
    assert "all ones" not in healthy.out
