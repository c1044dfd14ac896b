"""Bad input never gives a traceback, a newline never reaches a Proxmox config, a secret never
shows (issue 13 points 6, 7, 8): one line and a documented exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import test_pve_remote as pve
from tests.conftest import cli
from tests.fake_pve import FakePve
from tests.test_pve_remote import SECRET, remote
from vfiokit.errors import BadInput, ExitCode
from vfiokit.formats import pve_hostpci as pc

SRC = str(Path(__file__).parents[1] / "src")
HUGE = "9" * 5000
CONTROLS = st.sampled_from([chr(c) for c in [*range(0x20), 0x7F]])


@pytest.fixture(scope="module")
def _server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakePve]:
    """One fake cluster for the module (starting one costs a TLS key): each test gets it fresh."""
    with FakePve(pve.make_cluster(), tmp_path_factory.mktemp("pve")) as server:
        yield server


@pytest.fixture
def fake(_server: FakePve, monkeypatch: pytest.MonkeyPatch) -> FakePve:
    # The handler holds the cluster object: refill it with the one test_pve_remote starts from.
    _server.cluster.__dict__.update(pve.make_cluster().__dict__)
    monkeypatch.setenv("VFIOKIT_PVE_TOKEN", SECRET)
    return _server


def _one_error(err: str) -> str:
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("vfiokit: ")
               and ("error" in ln or "internal" in ln)]
    return line


# --- point 8: readers --------------------------------------------------------------------------

def test_invalid_utf8_on_standard_input_is_read_like_a_file() -> None:
    # A UTF-8 locale makes Python's stdin strict; PYTHONIOENCODING reproduces it whatever is installed.
    p = subprocess.run([sys.executable, "-m", "vfiokit", "groups", "--listing", "-"],
                       input=b"IOMMU Group 1 00:00.0 Host bridge [0600]: Caf\xe9 Inc [8086:1234]\n",
                       env={**os.environ, "PYTHONPATH": SRC, "PYTHONIOENCODING": "utf-8:strict"},
                       capture_output=True, check=False)
    assert p.returncode == 0, p.stderr
    assert b"00:00.0" in p.stdout and b"Traceback" not in p.stderr


@pytest.mark.parametrize(("text", "line"), [
    (f"IOMMU Group {HUGE} 00:00.0 Host bridge [0600]: Intel [8086:1234]\n", 1),
    (f"IOMMU Group 1:\n\t00:00.0 Host bridge [0600]: Intel [8086:1234]\n\tFlags: bus master, IOMMU group {HUGE}\n",
     3),
    (f"/sys/kernel/iommu_groups/{HUGE}/devices/0000:00:00.0\n", 1),
    ("│ class │ device │ id │ iommugroup │ vendor │\n"
     f"│ 0x060000 │ 0x1234 │ 0000:00:00.0 │ {HUGE} │ 0x8086 │\n", 2),
], ids=["group-header", "flags-line", "sysfs-path", "pvesh-table"])
def test_a_number_of_thousands_of_digits_in_a_listing_is_bad_input(text: str, line: int) -> None:
    r = cli("groups", "--listing", "-", stdin=text)
    assert r.code == ExitCode.BAD_INPUT
    assert _one_error(r.err).endswith(f"listing <stdin>: line {line}: a number too long to be one vfiokit reads")


def test_a_unicode_digit_after_iommugroup_is_not_a_group() -> None:
    r = cli("groups", "--listing", "-", stdin="Slot:\t00:00.0\nClass:\tHost bridge [0600]\nIOMMUGroup:\t²\n")
    assert r.code == ExitCode.BAD_INPUT and "no IOMMU group found" in _one_error(r.err)


def test_a_number_of_thousands_of_digits_in_a_snapshot_is_bad_input(tmp_path: Path) -> None:
    snap = tmp_path / "host.json"
    snap.write_text(f'{{"format": "vfiokit-snapshot", "version": {HUGE}}}\n')
    r = cli("groups", "--snapshot", str(snap))
    assert r.code == ExitCode.BAD_INPUT
    assert _one_error(r.err).endswith("not a vfiokit snapshot (a number too long to read)")


def test_an_unexpected_error_is_one_line_asking_for_a_report(monkeypatch: pytest.MonkeyPatch) -> None:
    from vfiokit.sources import listing

    def boom(path: str) -> None:
        raise RuntimeError("first line\nsecond line")

    monkeypatch.setattr(listing, "load", boom)
    r = cli("groups", "--listing", "-", stdin="")
    assert r.code == ExitCode.INTERNAL == 14
    line = _one_error(r.err)
    assert line.startswith("vfiokit: internal error: RuntimeError: first line second line at ")
    assert "please report it" in line and r.err.count("\n") == 1


#: What the audit's broken server answered: null, a string, a list of ints, objects without the keys.
BROKEN = [None, "text", [1, 2, 3], [{"foo": 1}], [{"node": None, "vmid": None, "id": {}}]]


@pytest.mark.parametrize("answer", BROKEN, ids=repr)
@pytest.mark.parametrize("path", ["/nodes", "/nodes/pve1/hardware/pci"])
def test_a_broken_api_answer_to_inventory_is_one_line(fake: FakePve, path: str, answer: object) -> None:
    fake.cluster.broken[path] = answer
    r = remote(fake, "cluster", "inventory", "--json") if path == "/nodes" else \
        remote(fake, "cluster", "inventory", "--node", "pve1")
    assert "Traceback" not in r.err and r.code in (0, ExitCode.BAD_INPUT, ExitCode.REMOTE), r.err
    if path == "/nodes" and answer != [{"node": None, "vmid": None, "id": {}}]:
        assert r.code == ExitCode.REMOTE and "GET /nodes: unexpected answer" in _one_error(r.err)
    if path.endswith("/pci") and r.code == 0:  # a node that fails is reported, the others shown
        assert "node pve1" in r.err


@pytest.mark.parametrize("answer", BROKEN, ids=repr)
@pytest.mark.parametrize("path", ["/cluster/resources", "/nodes/pve2/qemu", "/nodes/pve2/qemu/200/config",
                                  "/nodes/pve2/qemu/200/pending", "/nodes/pve2/qemu/200/status/current",
                                  "/cluster/mapping/pci", "/nodes/pve2/hardware/pci"])
def test_a_broken_api_answer_to_attach_is_one_line(fake: FakePve, path: str, answer: object) -> None:
    fake.cluster.broken[path] = answer
    r = remote(fake, "attach", "200", "--mapping", "gtx1050", "--dry-run")
    assert "Traceback" not in r.err
    assert r.code in (ExitCode.BAD_INPUT, ExitCode.NOT_FOUND, ExitCode.REMOTE, ExitCode.REFUSED), r.err
    _one_error(r.err)
    assert not [m for m, _, _ in fake.cluster.requests if m != "GET"]


# --- point 7: the token secret ------------------------------------------------------------------

def test_a_two_line_token_file_is_refused_without_showing_it(fake: FakePve, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(f"{SECRET}\nsecond-line-of-secret\n")
    r = cli("cluster", "inventory", "--host", fake.host, "--token-id", "root@pam!vfiokit", "--token-file",
            str(token), "--ca-file", str(fake.cafile))
    assert r.code == ExitCode.BAD_INPUT
    line = _one_error(r.err)
    assert "holds a line break" in line and SECRET not in r.err and "second-line" not in r.err
    assert fake.cluster.requests == []


def test_the_secret_is_blanked_from_any_error(fake: FakePve, monkeypatch: pytest.MonkeyPatch) -> None:
    from vfiokit.sources import proxmox_api

    def leak(self: object) -> None:
        raise RuntimeError(f"Invalid header: PVEAPIToken=root@pam!vfiokit={SECRET}")

    monkeypatch.setattr(proxmox_api.PveApi, "nodes", leak)
    r = remote(fake, "cluster", "inventory")
    assert r.code == ExitCode.INTERNAL and SECRET not in r.err and "vfiokit=***" in r.err


def test_insecure_warns_every_time(fake: FakePve) -> None:
    for _ in range(2):
        r = cli("cluster", "inventory", "--host", fake.host, "--token-id", "root@pam!vfiokit", "--insecure",
                "--node", "pve1")
        assert r.code == 0, r.err
        assert "vfiokit: warning: --insecure:" in r.err and "TLS certificate is not checked" in r.err


def test_a_refresh_command_does_not_get_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.bootroot import grub_host

    root = grub_host(tmp_path / "root", "proxmox8")
    log = tmp_path / "env.log"
    stand = tmp_path / "bin/update-grub"
    stand.parent.mkdir()
    stand.write_text(f'#!/bin/sh\necho "token=$VFIOKIT_PVE_TOKEN path=${{PATH:+set}}" > "{log}"\n')
    stand.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stand.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("VFIOKIT_PVE_TOKEN", SECRET)
    assert cli("boot", "add", "iommu=pt", "--root", str(root), "--yes").code == 0
    assert log.read_text() == "token= path=set\n"


# --- point 6: no control character in a value for Proxmox -----------------------------------------

def _with_control(base: str) -> st.SearchStrategy[str]:
    return st.tuples(st.integers(0, len(base)), CONTROLS).map(lambda t: base[:t[0]] + t[1] + base[t[0]:])


@settings(max_examples=150, deadline=None)
@given(romfile=_with_control("vbios.rom"), mapping=_with_control("gtx1050"), node=_with_control("pve1"),
       mdev=_with_control("nvidia-63"))
def test_every_value_for_proxmox_refuses_a_control_character(romfile: str, mapping: str, node: str,
                                                             mdev: str) -> None:
    for check in (lambda: pc.check_romfile(romfile), lambda: pc.check_plain(node, "node")):
        with pytest.raises(BadInput):
            check()
    for value in (f"mapping={mapping}", f"01:00.0,romfile={romfile}", f"01:00.0,mdev={mdev}",
                  f"01:00.0;02:00.0{romfile[0]}"):
        try:  # refused, or (blanks around a part are trimmed, as Proxmox does) written without it
            rendered = pc.parse_hostpci(value).render()
        except BadInput:
            continue
        assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in rendered), (value, rendered)
    assert not pc.CONFIGID_RE.match(mapping)
    assert not pc.CONFIGID_RE.match("gtx1050\n") and not pc.CONFIGID_RE.match("gpu\n")


def test_a_newline_in_romfile_or_a_mapping_name_never_reaches_proxmox(fake: FakePve) -> None:
    r = remote(fake, "attach", "200", "02:00", "--romfile", "x.rom\nhostpci5: 0000:00:00.0", "--dry-run")
    assert r.code == ExitCode.BAD_INPUT and "hostpci5" not in r.out and "\\n" in _one_error(r.err)
    r = remote(fake, "cluster", "map", "gpu\n", "01:00@pve1", "--yes")
    assert r.code == ExitCode.BAD_INPUT and "gpu\\n" in _one_error(r.err)
    r = remote(fake, "cluster", "map", "gpu", "01:00@pve1\n", "--yes")
    assert r.code == ExitCode.BAD_INPUT
    assert [m for m, _, _ in fake.cluster.requests if m != "GET"] == []
    assert cli("detach", "1\n00", "01:00").code == ExitCode.BAD_INPUT
    assert cli("detach", "１００", "01:00").code == ExitCode.BAD_INPUT


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12)
                     | st.sampled_from(["0000:01:00.0", "0x10de", "pve1", "9" * 4400, "²"]),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.sampled_from(["node", "id", "iommugroup", "vendor", "class",
                                                        "vmid", "status", "x"]), inner, max_size=5),
                     max_leaves=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nodes=st.one_of(st.just([{"node": "pve1"}]), _JSON),
       pci=st.one_of(st.lists(st.dictionaries(st.sampled_from(["id", "iommugroup", "vendor", "device", "class",
                                                               "vendor_name", "device_name", "subsystem_vendor"]),
                                              _JSON, max_size=8), max_size=3), _JSON))
def test_any_api_answer_to_inventory_is_a_result_or_one_line(fake: FakePve, nodes: object, pci: object) -> None:
    fake.cluster.broken.update({"/nodes": nodes, "/nodes/pve1/hardware/pci": pci})
    r = remote(fake, "cluster", "inventory", "--json", timeout="1")
    assert "Traceback" not in r.err and r.code in (0, ExitCode.BAD_INPUT, ExitCode.REMOTE), r.err
    if r.code:
        _one_error(r.err)
