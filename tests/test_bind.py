"""Handing devices to vfio-pci: `boot add vfio-pci.ids=` checks, `bind` / `unbind` now and at boot.

The host is the B550-like tree of tests/hostfacts.py (two identical WD SN750 NVMe, 15b7:5006:
01:00.0 alone in group 14 holding / and /boot/efi, 08:00.0 in the chipset group 15)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootroot import Standins, grub_host
from conftest import cli
from hostfacts import HostTree


@pytest.fixture
def standins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Standins:
    s = Standins(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{s.bin}:{os.environ['PATH']}")
    return s


def b550(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    h = HostTree(root)
    h.disk("01:00.0", "nvme0n1", via="nvme/nvme0", parts=3)
    h.disk("08:00.0", "nvme1n1", via="nvme/nvme1", parts=1)
    h.mounts("/dev/nvme0n1p2 / ext4", "/dev/nvme0n1p1 /boot/efi vfat")
    grub_host(root, "proxmox8", running="BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/nvme0n1p2 ro quiet")
    return root


# --- boot add vfio-pci.ids= ----------------------------------------------------------------------

def test_ids_that_catch_the_disk_under_root_are_refused(tmp_path: Path, standins: Standins) -> None:
    root = b550(tmp_path)
    before = (root / "etc/default/grub").read_bytes()
    r = cli("boot", "add", "vfio-pci.ids=15b7:5006", "--root", str(root), "--dry-run")
    assert r.code == 8, r.err
    # Both identical NVMe are named, and why the host cannot give up the first one.
    assert "vfio-pci.ids=15b7:5006 catches 2 device(s) at boot:" in r.err
    assert "01:00.0 Non-Volatile memory controller" in r.err and "08:00.0 Non-Volatile memory controller" in r.err
    assert "01:00.0: the root file system" in r.err
    assert "vfiokit bind --persistent DEVICE" in r.err
    assert "+++" not in r.out
    r = cli("boot", "add", "vfio-pci.ids=15b7:5006", "--root", str(root), "--yes", "--force")
    assert r.code == 0, r.err
    assert (root / "etc/default/grub").read_bytes() != before


def test_an_id_that_is_not_an_id_is_bad_input(tmp_path: Path) -> None:
    r = cli("boot", "add", "quiet", "vfio-pci.ids=10de", "--root", str(b550(tmp_path)), "--dry-run")
    assert r.code == 3
    assert r.err.strip() == ("vfiokit: error: vfio-pci.ids=10de: '10de' is not a PCI id (vvvv:dddd or "
                             "vvvv:dddd:ssss:ssss, hexadecimal, as 'lspci -nn' shows them)")


def test_ids_of_a_spare_nic_are_named_and_planned(tmp_path: Path) -> None:
    r = cli("boot", "add", "vfio_pci.ids=10EC:8125", "--root", str(b550(tmp_path)), "--dry-run")
    assert r.code == 0, r.err
    assert "0a:00.0 Ethernet controller: Realtek" in r.err and "driver r8169" in r.err
    assert '+GRUB_CMDLINE_LINUX_DEFAULT="quiet vfio_pci.ids=10EC:8125"' in r.out
