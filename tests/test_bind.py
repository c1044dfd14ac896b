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
from kernelstandin import KernelStandin


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
    h.nic("06:00.0", "enp6s0")
    h.route4("enp6s0")
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


# --- bind / unbind now -------------------------------------------------------------------------

@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KernelStandin:
    k = KernelStandin(b550(tmp_path))
    k.load_vfio()
    monkeypatch.setattr("vfiokit.cli.bind.KERNEL_STANDIN", k)
    return k


def test_bind_takes_the_whole_group_and_unbind_gives_it_back(kernel: KernelStandin) -> None:
    root = str(kernel.root)
    r = cli("bind", "0a:00.0", "--root", root, "--dry-run")
    # group 15 holds the boot GPU: unsafe, as 'check' says, refused as attach refuses it
    assert r.code == 8 and "--force overrides" in r.err and kernel.writes == []
    r = cli("bind", "04:00", "--root", root, "--yes", "--accept-siblings", "--force")
    assert r.code == 0, r.err
    endpoints = ["0000:02:00.0", "0000:02:00.1", "0000:04:00.0", "0000:04:00.1", "0000:06:00.0",
                 "0000:07:00.0", "0000:08:00.0", "0000:0a:00.0"]
    assert [kernel.driver(a) for a in endpoints] == ["vfio-pci"] * len(endpoints)
    assert kernel.driver("0000:02:00.2") == "pcieport"  # bridges left alone
    # the order: override first, then the driver lets go, then the probe
    first = [w for w in kernel.writes if "0000:04:00.0" in w[0] or w[1] == "0000:04:00.0"]
    assert first == [("/sys/bus/pci/devices/0000:04:00.0/driver_override", "vfio-pci"),
                     ("/sys/bus/pci/devices/0000:04:00.0/driver/unbind", "0000:04:00.0"),
                     ("/sys/bus/pci/drivers_probe", "0000:04:00.0")]
    assert "now: 04:00.0: the host loses the display: the screen goes black" in r.err
    assert "now: 06:00.0: the host loses the network: its link drops" in r.err
    assert "/dev/vfio/15 ready" in r.err
    assert cli("bind", "04:00.0", "--root", root, "--yes").err.startswith("vfiokit: nothing to do")

    r = cli("unbind", "06:00.0", "--root", root, "--yes")
    assert r.code == 0, r.err
    assert [kernel.driver(a) for a in endpoints] == ["xhci_hcd", "ahci", "nouveau", "snd_hda_intel", "r8169",
                                                     "ahci", "nvme", "r8169"]
    assert "0000:04:00.0 (nouveau)" in r.err
    assert not (kernel.root / "var/backups/vfiokit/bound.json").exists()
    assert (kernel.root / "sys/bus/pci/devices/0000:04:00.0/driver_override").read_text() == "(null)\n"


def test_bind_of_the_disk_under_root_is_refused(kernel: KernelStandin) -> None:
    r = cli("bind", "01:00.0", "--root", str(kernel.root), "--yes")
    assert r.code == 8 and "unsafe" in r.err and "--force" in r.err
    assert kernel.writes == [] and kernel.driver("0000:01:00.0") == "nvme"


def test_the_plan_is_shown_and_dry_run_writes_nothing(kernel: KernelStandin) -> None:
    r = cli("bind", "08:00.0", "--root", str(kernel.root), "--dry-run", "--accept-siblings", "--force")
    assert r.code == 0, r.err
    assert "  echo vfio-pci > /sys/bus/pci/devices/0000:08:00.0/driver_override" in r.out
    assert "bind: 0000:08:00.0 nvme -> vfio-pci (IOMMU group 15)" in r.err
    assert kernel.writes == []


def test_unknown_device_bridge_and_bad_address(kernel: KernelStandin) -> None:
    root = str(kernel.root)
    r = cli("bind", "09:00.0", "--root", root)
    assert r.code == 4 and r.err.strip().endswith("09:00.0: no such PCI device on tree " + root)
    r = cli("bind", "00:02.1", "--root", root)
    assert r.code == 8 and "0000:00:02.1: is a bridge" in r.err
    assert cli("bind", "nvme", "--root", root).code == 3


def test_busy_driver_is_one_line_and_the_record_is_untouched(kernel: KernelStandin,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from vfiokit.edits import sysfs_bind

    real = sysfs_bind._write

    def busy(root: str, step: sysfs_bind.Step) -> None:
        if step.path.endswith("/unbind"):
            raise OSError(errno.EBUSY, "Device or resource busy")
        real(root, step)

    monkeypatch.setattr(sysfs_bind, "_write", busy)
    r = cli("bind", "0a:00.0", "--root", str(kernel.root), "--yes", "--accept-siblings", "--force")
    assert r.code == 7
    errors = [ln for ln in r.err.splitlines() if ln.startswith("vfiokit: error:")]
    assert errors == ["vfiokit: error: 0000:02:00.0: writing /sys/bus/pci/devices/0000:02:00.0/driver/unbind "
                      "failed: the driver will not let go (in use: a mounted disk, an open device?)"]
    assert not (kernel.root / "var/backups/vfiokit/bound.json").exists()


def test_modprobe_runs_first_when_vfio_pci_is_not_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    k = KernelStandin(b550(tmp_path))
    monkeypatch.setattr("vfiokit.cli.bind.KERNEL_STANDIN", k)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "modprobe").write_text("#!/bin/sh\necho 'modprobe: FATAL: Module vfio-pci not found.' >&2\nexit 1\n")
    (bin_ / "modprobe").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    r = cli("bind", "0a:00.0", "--root", str(k.root), "--yes", "--accept-siblings", "--force")
    assert r.code == 7
    assert ("modprobe vfio-pci failed (exit 1: modprobe: FATAL: Module vfio-pci not found.); "
            "nothing was changed") in r.err
    assert k.writes == []
