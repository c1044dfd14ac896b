"""`simulate --alone` (issue 16 point 4): what the answer changes is computed for the whole host,
the answer comes first and the table shows the recommended override, slots are accepted, and an
override that separates a device from its own card's functions says so.

Real material: the QEMU lab's capture of root ports with ACS switched off (every port has QEMU's
id 1b36:000c) and the article's B550 board."""

from __future__ import annotations

import json

from tests.conftest import cli

PORTS = "lab-root-ports-disable-acs"
B550 = "asus-tuf-b550-plus"


def _simulated(sample: str, *args: str) -> dict:
    r = cli("simulate", "--sample", sample, *args, "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)


def test_an_id_override_changes_every_group_below_ports_with_that_id_and_says_so():
    data = _simulated(PORTS, "--alone", "01:00.0")
    (advice,) = data["alone"]
    assert advice["override"] == "id:1b36:000c"
    # 02:00.0 sits below another 1b36:000c port, in another group: the override splits that too.
    affected = set(advice["also_affected"])
    assert {"0000:00:03.0", "0000:02:00.0"} <= affected
    # The answer and the table agree: what it says changes is what the simulation shows changing.
    assert data["override"] == "id:1b36:000c"
    changed = {c["address"] for c in data["changes"] if c["separated_from"] or c["joined_with"]}
    assert affected == changed - {"0000:01:00.0"}


def test_the_answer_comes_first_then_the_table_for_the_recommended_override():
    r = cli("simulate", "--sample", PORTS, "--alone", "01:00.0")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    answer = next(i for i, ln in enumerate(lines) if "smallest override that makes it alone" in ln)
    table = next(i for i, ln in enumerate(lines) if ln.startswith("pcie_acs_override="))
    assert answer < table
    assert lines[table].startswith("pcie_acs_override=id:1b36:000c ")
    assert "downstream,multifunction" not in r.out
    assert "it also changes the groups of 7 other device(s)" in r.out
    # An explicit --acs-override still wins for the table.
    own = cli("simulate", "--sample", PORTS, "--alone", "01:00.0", "--acs-override", "downstream")
    assert "pcie_acs_override=downstream " in own.out


def test_a_slot_asks_for_the_whole_card_and_a_function_is_told_it_splits_its_card():
    (card,) = _simulated(B550, "--alone", "04:00")["alone"]
    assert card["targets"] == ["0000:04:00.0", "0000:04:00.1"]
    assert card["override"] == "id:1022:43e9,id:1022:43ea" and card["splits_card"] == []
    (gpu,) = _simulated(B550, "--alone", "04:00.0")["alone"]
    assert gpu["splits_card"] == ["0000:04:00.1"]
    r = cli("simulate", "--sample", B550, "--alone", "04:00.0")
    assert ("it also separates 04:00.0 from its own card's other function(s) 04:00.1: Proxmox passes a "
            "card's functions together; ask for the whole card with --alone 04:00") in r.out
    missing = cli("simulate", "--sample", B550, "--alone", "09:00")
    assert missing.code == 4 and "no PCI device in slot 09:00" in missing.err
