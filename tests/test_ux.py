"""How a person asks and reads: device words, "did you mean", usage errors, --json errors, pipes.

Driven through the real CLI (in-process, or as a subprocess where a pipe or a terminal matters).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli
from vfiokit.sources.synthetic import Spec, capture_of
from vfiokit.sources.tree import materialize

B550 = "asus-tuf-b550-plus"
SRC = str(Path(__file__).resolve().parents[1] / "src")


# -- device words (README "Naming a device") ----------------------------------------------------

@pytest.mark.parametrize("word, first", [
    ("04:00.0", "04:00.0"), ("0000:04:00.0", "04:00.0"), ("04:00", "04:00 (all functions)"),
    ("10de:1430", "04:00.0"), ("gpu", "04:00.0"), ("vga", "04:00.0"), ("sata", None),
])
def test_device_words_name_the_card(word, first):
    r = cli("check", "--sample", B550, word)
    if first is None:  # two SATA controllers: listed, not guessed
        assert r.code == 4 and "'sata' names 2 devices" in r.err and "02:00.1" in r.err and "07:00.0" in r.err
        return
    verdict = next(ln for ln in r.out.splitlines() if ln.startswith("Verdict:"))
    assert f"passing {first} takes" in verdict


@pytest.mark.parametrize("word, listed", [
    ("nvme", ["01:00.0", "08:00.0", "0b:00.0"]), ("nic", ["06:00.0", "0a:00.0"]),
    ("usb", ["02:00.0", "0d:00.3"]), ("audio", ["04:00.1", "0d:00.4"]),
    ("15b7:5006", ["01:00.0", "08:00.0", "0b:00.0"]),
    ("storage", ["01:00.0", "02:00.1", "07:00.0", "08:00.0", "0b:00.0"]),
])
def test_a_word_naming_several_devices_lists_them_and_exits_4(word, listed):
    r = cli("check", "--sample", B550, word, "--json")
    assert r.code == 4 and not r.out.startswith("Verdict")
    err = json.loads(r.out)
    assert err["kind"] == "error" and err["device"] == word
    assert [a[5:] for a in err["candidates"]] == listed
    assert all(a in r.err for a in listed)


def test_a_word_naming_nothing_says_what_exists():
    r = cli("check", "--sample", B550, "hba")
    assert r.code == 4 and "no hba (SCSI storage controller [0100]" in r.err
    assert f"'vfiokit groups --sample {B550}' lists the devices" in r.err
    r = cli("check", "--sample", B550, "gpus")
    assert r.code == 3 and "did you mean gpu?" in r.err


def test_a_mistyped_address_gets_the_nearest_ones_and_the_same_source():
    r = cli("check", "--sample", B550, "04:00.3")
    assert r.code == 4
    hint = r.err.splitlines()[1]
    assert "did you mean" in hint and "04:00.1" in hint and f"vfiokit groups --sample {B550}" in hint


def _two_domains(tmp_path: Path) -> Path:
    """Two PCI domains with the same buses (as on a host with several PCI segments): 0000:01:00.x
    and 0001:01:00.x are different cards, one NIC function each of 12."""
    from vfiokit.model import PCIE_ENDPOINT, PCIE_ROOT_PORT
    from vfiokit.sources.tree import materialize

    specs = []
    for domain in (0, 1):
        rp = f"{domain:04x}:00:01.0"
        specs += [Spec(rp, 0x1022, 0x1483, 0x060400, pcie_type=PCIE_ROOT_PORT, secondary_bus=1, group=10 * domain),
                  *(Spec(f"{domain:04x}:01:00.{f}", 0x8086, 0x1521, 0x020000, parent=rp, pcie_type=PCIE_ENDPOINT,
                         multifunction=True, group=10 * domain + 1 + f) for f in range(6))]
    return materialize(capture_of(specs), tmp_path / "root")


def test_a_word_naming_many_devices_lists_a_few_and_json_gives_all(tmp_path: Path) -> None:
    root = _two_domains(tmp_path)
    r = cli("check", "nic", "--root", str(root))
    assert r.code == 4
    error = r.err.splitlines()[0]
    assert error.startswith(f"vfiokit: error: 'nic' names 12 devices in tree {root}: 0000:01:00.0 (Ethernet ")
    assert error.count("(Ethernet controller 8086:1521)") == 8
    assert error.endswith(f"and 4 more ('vfiokit groups --root {root}' lists them)")
    assert "e.g. 0000:01:00.0" in r.err.splitlines()[1]
    assert len(json.loads(cli("check", "nic", "--root", str(root), "--json").out)["candidates"]) == 12


def test_the_nearest_addresses_keep_their_domain_when_the_host_has_several(tmp_path: Path) -> None:
    root = _two_domains(tmp_path)
    hint = cli("check", "01:00.7", "--root", str(root)).err.splitlines()[1]
    near = hint.removeprefix("vfiokit: hint: did you mean ").split("?")[0].split(" or ")
    assert len(near) == len(set(near)) == 3 and all(len(a) == 12 for a in near), hint
    hint = cli("check", "01:01", "--root", str(root)).err.splitlines()[1]
    slots = hint.removeprefix("vfiokit: hint: did you mean ").split("?")[0].split(" or ")
    assert len(slots) == len(set(slots)) and {"0000:01:00", "0001:01:00"} <= set(slots), hint


def test_simulate_takes_the_same_words():
    r = cli("simulate", "--sample", B550, "--device", "sata", "--json")
    assert r.code == 4 and json.loads(r.out)["kind"] == "error"
    r = cli("simulate", "--sample", B550, "--device", "gpu", "--json")
    assert r.code == 0 and json.loads(r.out)["devices"][0]["address"] == "0000:04:00.0"


# -- usage errors and "did you mean" ------------------------------------------------------------

@pytest.mark.parametrize("args, says", [
    (["grops"], "no command 'grops' in 'vfiokit'; did you mean groups?"),
    (["boot", "statu"], "did you mean status?"),
    (["check"], "missing argument 'DEVICE...'"),
    (["groups", "--jsn"], "--json"),
])
def test_usage_errors_look_like_every_other_error(args, says):
    r = cli(*args)
    first, hint = r.err.splitlines()
    assert r.code == 2 and first.startswith("vfiokit: error: ") and says in first
    assert hint.startswith("vfiokit: hint: '") and hint.endswith(" --help' shows the usage")
    assert "Usage:" not in r.err and "Error:" not in r.err


# -- every error under --json is an envelope ----------------------------------------------------

@pytest.mark.parametrize("args, code", [
    (["check", "--json"], 2),
    (["check", "--json", "--sample", B550, "--snapshot", "x.json", "01:00.0"], 2),
    (["check", "--json", "--sample", B550, "09:00.0"], 4),
    (["check", "--json", "--sample", B550, "nvme"], 4),
    (["check", "--json", "--sample", B550, "7:0.0"], 3),
    (["check", "--json", "--sample", B550, "00:01.1"], 3),
    (["check", "--json", "--sample", "no-such-sample", "01:00.0"], 3),
    (["check", "--json", "--snapshot", "/nonexistent.json", "01:00.0"], 3),
    (["groups", "--json", "--listing", "/nonexistent"], 3),
    (["groups", "--json", "--bogus"], 2),
    (["simulate", "--json", "--sample", B550, "--acs-override", "downstrem"], 3),
    (["simulate", "--json", "--sample", B550, "--alone", "09:00.0"], 4),
    (["samples", "--json", "extra"], 2),
    (["compare", "--json", "sample:nope", "live"], 3),
    (["attach", "--json", "abc", "01:00.0"], 2),
])
def test_every_error_under_json_is_a_parseable_envelope(args, code):
    r = cli(*args)
    assert r.code == code, r.err
    body = json.loads(r.out)
    assert (body["kind"], body["code"]) == ("error", code)
    assert body["message"] and r.err.startswith(f"vfiokit: error: {body['message']}")


# -- pipes ------------------------------------------------------------------------------------

def test_check_into_a_closed_pipe_exits_with_the_verdict_code():
    # `vfiokit check ... | head -1` with head gone before vfiokit writes: every write meets EPIPE
    # (the read end is closed before the process starts, so this does not depend on timing).
    env = {**os.environ, "PYTHONPATH": SRC}
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run([sys.executable, "-m", "vfiokit", "check", "--sample", B550, "04:00.0"],
                           stdout=write_end, stderr=subprocess.PIPE, text=True, env=env)
    finally:
        os.close(write_end)
    assert r.returncode == 11, r.stderr
    assert "BrokenPipe" not in r.stderr and "Exception ignored" not in r.stderr
    r = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m vfiokit check --sample {B550} "
                        "04:00.0 | head -1"], capture_output=True, text=True, env=env)
    assert (r.returncode, r.stdout) == (11, f"sample {B550} (not this host)\n")


def test_a_long_listing_into_a_pipe_closed_midway_exits_0(tmp_path):
    # `vfiokit groups | head -1` on a host whose listing outgrows the pipe's buffer: the pipe
    # breaks in the middle of the listing, which is written in one go (print_lines).
    specs = [Spec(f"{bus:02x}:{slot:02x}.{fn}", 0x8086, 0x1572, 0x020000, group=bus * 256 + slot * 8 + fn)
             for bus in range(4) for slot in range(32) for fn in range(8)]
    tree = materialize(capture_of(specs), tmp_path / "host")
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m vfiokit groups --root {tree} | head -1"],
                       capture_output=True, text=True, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"tree {tree}\n", "")


def test_a_mistyped_sample_name_gets_the_nearest_few_not_all():
    r = cli("groups", "--sample", "asus-tuf-b550")
    first, hint = r.err.splitlines()
    assert r.code == 3 and first == "vfiokit: error: no sample named 'asus-tuf-b550'"
    assert hint.startswith(f"vfiokit: hint: did you mean {B550}? 'vfiokit samples' lists all")
    assert len(r.err) < 200


# -- groups filters (README "Naming a device" table) --------------------------------------------

def _groups(*args: str) -> list[int]:
    r = cli("groups", "--sample", B550, "--json", *args)
    assert r.code == 0, r.err
    return [g["number"] for g in json.loads(r.out)["groups"]]


@pytest.mark.parametrize("args, want", [
    (["--class", "gpu"], [15]),
    (["--class", "vga"], [15]),
    (["--class", "nvme"], [14, 15, 16]),
    (["--class", "nvme", "--shared"], [15]),
    (["--class", "storage"], [14, 15, 16]),
    (["--class", "usb"], [15, 20]),
    (["--class", "audio"], [15, 21]),
    (["--class", "nic"], [15]),
    (["--class", "sata"], [15]),
    (["--class", "hba"], []),
    (["--group", "16", "--group", "12"], [12, 16]),
    (["--ids", "10EC:8125"], [15]),
    (["--driver", "nvme"], [14, 15, 16]),
    (["--driver", "nvme", "--class", "nvme", "--group", "16"], [16]),
    (["--shared"], [12, 13, 15]),
])
def test_groups_filters_keep_whole_groups(args, want):
    assert _groups(*args) == want


def test_a_filtered_group_is_shown_whole_and_an_empty_result_says_so():
    r = cli("groups", "--sample", B550, "--class", "gpu")
    assert "IOMMU group 15 (16 devices)" in r.out and "0a:00.0 Ethernet controller" in r.out
    r = cli("groups", "--sample", B550, "--class", "hba")
    assert r.code == 0 and "no IOMMU group of the" in r.err
    r = cli("groups", "--sample", B550, "--ids", "10de")
    assert r.code == 3 and "expected vvvv:dddd" in r.err
    r = cli("groups", "--sample", B550, "--class", "gpus")
    assert r.code == 2 and "vfiokit: error: invalid value for '--class'" in r.err


# -- check reads answer-first and ends with the next step ------------------------------------

def test_a_long_check_repeats_the_verdict_last_and_gives_the_next_command():
    r = cli("check", "--sample", B550, "07:00.0")
    lines = r.out.splitlines()
    assert r.code == 11 and lines[1].startswith("Verdict: unsafe - ") and lines[-2] == lines[1]
    assert lines[-1].startswith(f"Next: vfiokit simulate --sample {B550} --alone 07:00.0")
    r = cli("check", "--sample", B550, "0b:00.0")
    assert r.out.splitlines()[-1].startswith("Next: vfiokit attach VMID 0b:00.0 --pcie")
    assert r.out.count("Verdict:") == 1  # short: nothing scrolled away


def test_singular_and_plural_agree():
    r = cli("check", "--sample", B550, "0b:00.0", "0d:00.4")
    assert "Verdict: alone - 0b:00.0 and 0d:00.4 are alone in IOMMU groups 16 and 21: passing them" in r.out
    r = cli("check", "--sample", B550, "0b:00.0")
    assert "0b:00.0 is alone in IOMMU group 16: passing it takes" in r.out


def test_a_bridge_as_target_names_the_endpoints_behind_it_not_more_bridges():
    r = cli("check", "--sample", B550, "02:00.2")
    assert r.code == 3 and "behind it: 04:00.0, 04:00.1, 06:00.0, 07:00.0, 08:00.0, 0a:00.0" in r.err
    assert "03:00.0" not in r.err


def test_the_boot_gpu_gets_the_real_choices():
    r = cli("check", "--sample", B550, "04:00.0")
    why = next(ln for ln in r.out.splitlines() if "is the boot GPU" in ln)
    assert "primary in the firmware setup" in why and "initcall_blacklist=sysfb_init" in why
    assert "headless over SSH" in why and "costs the local screen" in why


# -- wrapping on a terminal ---------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def _in_pty(args: list[str], columns: int) -> str:
    """Run vfiokit with stdout and stderr on a pseudo-terminal of `columns` columns."""
    import fcntl
    import struct
    import termios

    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": str(columns), "TERM": "xterm"}
    p = subprocess.Popen([sys.executable, "-m", "vfiokit", *args], stdout=follower, stderr=follower,
                         stdin=subprocess.DEVNULL, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the follower side closed
            break
        if not data:
            break
        chunks.append(data)
    p.wait()
    os.close(leader)
    return ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("args", [
    ["check", "--sample", B550, "07:00.0"],
    ["check", "--sample", B550, "nvme"],
    ["groups", "--sample", B550],
    ["simulate", "--sample", B550, "--device", "storage"],
])
def test_a_terminal_gets_lines_that_fit_cut_between_words(args, columns):
    shown = _in_pty(args, columns)
    lines = shown.splitlines()
    assert len(lines) > 1
    assert max(len(ln) for ln in lines) <= columns, max(lines, key=len)
    # piped, the same words come out one record per line: wrapping moved words, never cut one
    piped = subprocess.run([sys.executable, "-m", "vfiokit", *args], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": SRC})
    assert sorted(shown.split()) == sorted((piped.stdout + piped.stderr).split())
    assert max(len(ln) for ln in (piped.stdout + piped.stderr).splitlines()) > columns  # it had to wrap

