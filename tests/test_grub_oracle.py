"""`sh` judges GRUB edits: after `vfiokit boot add/remove`, sourcing /etc/default/grub then
grub.d/*.cfg (as update-grub does) gives exactly the old value plus/minus the parameters, and
every other byte of every file is unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bootroot import FIXTURES, Standins, grub_host, sh_value
from tests.conftest import cli

VAR = "GRUB_CMDLINE_LINUX_DEFAULT"

# (corpus entry, the file that decides, how the test varies the assignment line or None)
CASES = [
    ("debian12", "grub", None),
    ("ubuntu2404", "grub", None),
    ("proxmox8", "grub", None),
    ("proxmox8-zfs", "grub", None),
    ("ubuntu-cloud", "grub.d/50-cloudimg-settings.cfg", None),
    # User-edited variants of Debian's file: only the assignment line differs.
    ("debian12", "grub", "GRUB_CMDLINE_LINUX_DEFAULT='quiet'"),
    ("debian12", "grub", "GRUB_CMDLINE_LINUX_DEFAULT="),
    ("debian12", "grub", 'GRUB_CMDLINE_LINUX_DEFAULT=""'),
    ("debian12", "grub", "GRUB_CMDLINE_LINUX_DEFAULT=''"),
    ("debian12", "grub", "GRUB_CMDLINE_LINUX_DEFAULT=quiet"),
    ("debian12", "grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet  splash"   # two blanks, kept'),
    ("debian12", "grub", 'export GRUB_CMDLINE_LINUX_DEFAULT="quiet"'),
    ("debian12", "grub", '#GRUB_CMDLINE_LINUX_DEFAULT="old"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
                         'GRUB_CMDLINE_LINUX_DEFAULT="quiet nosplash"'),
    ("debian12", "grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off vfio-pci.ids=10de:1b80"'),
]
UNQUOTED = {"GRUB_CMDLINE_LINUX_DEFAULT=", "GRUB_CMDLINE_LINUX_DEFAULT=quiet"}


def _host(tmp_path: Path, corpus: str, variant: str | None) -> Path:
    root = grub_host(tmp_path / "root", corpus, running="BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro quiet")
    if variant is not None:
        main = root / "etc/default/grub"
        main.write_text(main.read_text().replace('GRUB_CMDLINE_LINUX_DEFAULT="quiet"', variant))
    return root


def _files(root: Path) -> dict[str, bytes]:
    d = root / "etc/default"
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _other_lines_identical(before: bytes, after: bytes) -> None:
    b, a = before.decode().splitlines(keepends=True), after.decode().splitlines(keepends=True)
    assert len(a) == len(b) + (1 if not any(VAR + "=" in x for x in b) else 0)
    changed = [i for i, (x, y) in enumerate(zip(b, a, strict=False)) if x != y]
    assert len(changed) <= 1
    for i in changed:
        assert VAR + "=" in b[i]


@pytest.mark.parametrize(("corpus", "deciding", "variant"), CASES)
@pytest.mark.parametrize("params", [["intel_iommu=on"], ["intel_iommu=on", "iommu=pt",
                                                          "pcie_acs_override=downstream,multifunction"]])
def test_add_then_remove_through_sh(tmp_path: Path, standins: Standins, corpus: str, deciding: str,
                                    variant: str | None, params: list[str]) -> None:
    root = _host(tmp_path, corpus, variant)
    etc = root / "etc/default"
    old_value = sh_value(etc)
    before = _files(root)

    r = cli("boot", "add", *params, "--root", str(root), "--yes")
    assert r.code == 0, r.err
    value = sh_value(etc)
    old_tokens = old_value.split()
    by_key = {p.partition("=")[0]: p for p in params}
    new_params = [p for p in params if p.partition("=")[0] not in {t.partition("=")[0] for t in old_tokens}]
    # a=1 replaces a=2 where it stands; new parameters go at the end
    assert value.split() == [by_key.get(t.partition("=")[0], t) for t in old_tokens] + new_params
    if old_value.strip() and new_params and len(new_params) == len(params):
        assert value == old_value + " " + " ".join(new_params)  # the user's blanks are kept
    after = _files(root)
    for name in before:
        if name == deciding:
            _other_lines_identical(before[name], after[name])
        else:
            assert after[name] == before[name], f"{name} changed"
    assert standins.calls() == ["update-grub "]

    r = cli("boot", "remove", *params, "--root", str(root), "--yes")
    assert r.code == 0, r.err
    assert sh_value(etc).split() == [t for t in old_tokens if t.partition("=")[0]
                                     not in {p.partition("=")[0] for p in params}]
    if any(p.partition("=")[0] in old_value for p in params):
        return
    if variant in UNQUOTED and len(old_tokens + params) > 1:
        # An unquoted value gained double quotes when it got a blank; they stay.
        assert (root / "etc/default/grub").read_text() == before["grub"].decode().replace(
            variant + "\n", f'{VAR}="{old_value}"\n')
    else:
        assert _files(root) == before  # the round trip restores every byte


def test_replacing_a_value_is_seen_by_sh(tmp_path: Path, standins: Standins) -> None:
    root = _host(tmp_path, "debian12", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off"')
    assert cli("boot", "add", "intel_iommu=on", "--root", str(root), "--yes").code == 0
    assert sh_value(root / "etc/default") == "quiet intel_iommu=on"


def test_the_cloud_images_drop_in_decides(tmp_path: Path, standins: Standins) -> None:
    root = _host(tmp_path, "ubuntu-cloud", None)
    main_before = (root / "etc/default/grub").read_bytes()
    assert cli("boot", "add", "iommu=pt", "--root", str(root), "--yes").code == 0
    assert (root / "etc/default/grub").read_bytes() == main_before
    assert sh_value(root / "etc/default") == "console=tty1 console=ttyS0 iommu=pt"


def test_a_file_that_never_sets_the_variable_gets_one_line(tmp_path: Path, standins: Standins) -> None:
    root = _host(tmp_path, "debian12", None)
    main = root / "etc/default/grub"
    main.write_text(main.read_text().replace('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', ""))
    before = main.read_text()
    assert cli("boot", "add", "intel_iommu=on", "--root", str(root), "--yes").code == 0
    assert main.read_text() == before + 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on"\n'
    assert sh_value(root / "etc/default") == "intel_iommu=on"


@pytest.mark.parametrize(("variant", "reason"), [
    ('GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT quiet"', "built from other variables"),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet $(cat /etc/extra)"', "built from other variables"),
    ("GRUB_CMDLINE_LINUX_DEFAULT=`cat /etc/extra`", "built from other variables"),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet\nsplash"', "spans several lines"),
    ("GRUB_CMDLINE_LINUX_DEFAULT='quiet\nsplash'", "spans several lines"),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet \\\nsplash"', "backslash"),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\' splash\'', "joins several quoted parts"),
    ('if true; then\n  GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nfi', "inside a command, block or condition"),
    ('[ -e /x ] && GRUB_CMDLINE_LINUX_DEFAULT="quiet"', "inside a command, block or condition"),
])
def test_what_cannot_be_read_exactly_is_refused_with_the_reason(tmp_path: Path, standins: Standins,
                                                                 variant: str, reason: str) -> None:
    root = _host(tmp_path, "debian12", variant)
    before = _files(root)
    r = cli("boot", "add", "intel_iommu=on", "--root", str(root), "--yes")
    assert r.code == 8, r.err
    first = r.err.splitlines()[0]
    assert first.startswith("vfiokit: error: ") and "/etc/default/grub: line " in first and reason in first
    assert _files(root) == before and standins.calls() == []


def test_ubuntu_kdump_drop_in_is_refused_naming_it(tmp_path: Path, standins: Standins) -> None:
    root = _host(tmp_path, "ubuntu-kdump", None)
    r = cli("boot", "add", "intel_iommu=on", "--root", str(root), "--yes")
    assert r.code == 8
    assert "grub.d/kdump-tools.cfg: line 1: GRUB_CMDLINE_LINUX_DEFAULT is built from other variables" in r.err


def test_the_corpus_is_what_the_oracle_reads(tmp_path: Path) -> None:
    """The fixtures themselves, through sh: guards against a corpus edit going unnoticed."""
    want = {"debian12": "quiet", "ubuntu2404": "quiet splash", "proxmox8": "quiet",
            "proxmox8-zfs": "quiet", "ubuntu-cloud": "console=tty1 console=ttyS0"}
    for corpus, value in want.items():
        etc = grub_host(tmp_path / corpus, corpus) / "etc/default"
        assert sh_value(etc) == value
    assert sh_value(grub_host(tmp_path / "z", "proxmox8-zfs") / "etc/default",
                    "GRUB_CMDLINE_LINUX") == "root=ZFS=rpool/ROOT/pve-1 boot=zfs"
    assert (FIXTURES / "README.md").exists()
