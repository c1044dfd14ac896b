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
from test_formats_modprobe import needs_kmod, showconfig


def debian_etc(root: Path) -> None:
    """The folders a Debian/Proxmox host has from its packages (kmod, systemd, initramfs-tools)."""
    for d in ("etc/modprobe.d", "etc/modules-load.d", "etc/initramfs-tools/scripts/init-top"):
        (root / d).mkdir(parents=True, exist_ok=True)


def b550(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    h = HostTree(root)
    h.disk("01:00.0", "nvme0n1", via="nvme/nvme0", parts=3)
    h.disk("08:00.0", "nvme1n1", via="nvme/nvme1", parts=1)
    h.mounts("/dev/nvme0n1p2 / ext4", "/dev/nvme0n1p1 /boot/efi vfat")
    h.nic("06:00.0", "enp6s0")
    h.route4("enp6s0")
    grub_host(root, "proxmox8", running="BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/nvme0n1p2 ro quiet")
    debian_etc(root)
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
    # the resolver every command uses: the device, the tree, and the command that lists what is there
    assert r.code == 4 and f"no PCI device at 0000:09:00.0 in tree {root}" in r.err
    assert f"'vfiokit groups --root {root}' lists the devices" in r.err
    r = cli("bind", "00:02.1", "--root", root)
    assert r.code == 8 and "0000:00:02.1: is a bridge" in r.err
    assert cli("bind", "nvme0", "--root", root).code == 3  # neither an address nor a device word


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


# --- bind --persistent ---------------------------------------------------------------------------

@pytest.fixture
def refresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in `update-initramfs` (the real one rebuilds this machine's /boot): logs its
    arguments, fails with STANDIN_FAIL."""
    bin_ = tmp_path / "refresh-bin"
    bin_.mkdir()
    log = tmp_path / "refresh.log"
    (bin_ / "update-initramfs").write_text(
        f'#!/bin/sh\necho "update-initramfs $*" >> "{log}"\n'
        'if [ -n "$STANDIN_FAIL" ]; then echo "E: /boot is full" >&2; exit "$STANDIN_FAIL"; fi\n')
    (bin_ / "update-initramfs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    return log


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "var/backups" not in str(p) and not str(p.relative_to(root)).startswith(("sys", "proc"))}


HOOK = "etc/initramfs-tools/scripts/init-top/00vfiokit-bind"
FORCED = ("--yes", "--force", "--accept-siblings")


def test_twin_nvme_is_bound_by_address_and_the_hook_sets_driver_override(tmp_path: Path, refresh: Path) -> None:
    import shutil
    import subprocess

    root = b550(tmp_path)
    r = cli("bind", "--persistent", "08:00.0", "--root", str(root), *FORCED)
    assert r.code == 0, r.err
    assert "by address: options vfio-pci ids= would also take 01:00.0 (15b7:5006, driver nvme)" in r.err
    assert refresh.read_text() == "update-initramfs -u -k all\n"
    assert not (root / "etc/modprobe.d/vfiokit.conf").exists()
    hook = root / HOOK
    assert hook.stat().st_mode & 0o111
    assert subprocess.run(["sh", "-n", str(hook)]).returncode == 0
    # Run as initramfs-tools would (its `prereqs` call, then the script), by busybox's sh when
    # there is one, on the tree's sysfs: the listed functions get vfio-pci, the twin under / not.
    kernel = KernelStandin(root)
    text = hook.read_text().replace("/sys/", f"{root}/sys/")
    sh = [shutil.which("busybox") or "sh", "sh"] if shutil.which("busybox") else ["sh"]
    assert subprocess.run([*sh, "-c", text, "x", "prereqs"], capture_output=True, text=True).stdout == "\n"
    subprocess.run([*sh, "-c", text], check=True)
    override = root / "sys/bus/pci/devices/{}/driver_override"
    assert Path(str(override).format("0000:08:00.0")).read_text() == "vfio-pci\n"
    assert Path(str(override).format("0000:01:00.0")).read_text() == "(null)\n"
    assert kernel.driver("0000:01:00.0") == "nvme"
    assert (root / "etc/initramfs-tools/modules").read_text().endswith("vfio\nvfio_iommu_type1\nvfio_pci\n")


def test_unbind_persistent_takes_back_exactly_what_bind_added(tmp_path: Path, refresh: Path) -> None:
    root = b550(tmp_path)
    (root / "etc/initramfs-tools/modules").write_text("# List of modules\nraid1\n")
    before = _tree(root)
    assert cli("bind", "--persistent", "0a:00.0", "--root", str(root), *FORCED).code == 0
    assert _tree(root) != before
    assert cli("bind", "--persistent", "0a:00.0", "--root", str(root), *FORCED).err.count("nothing to change") == 1
    r = cli("unbind", "--persistent", "0a:00.0", "--root", str(root), "--yes")
    assert r.code == 0, r.err
    assert _tree(root) == before
    assert refresh.read_text().count("update-initramfs -u -k all") == 2


def test_a_failing_refresh_puts_every_file_back(tmp_path: Path, refresh: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = b550(tmp_path)
    before = _tree(root)
    monkeypatch.setenv("STANDIN_FAIL", "1")
    r = cli("bind", "--persistent", "08:00.0", "--root", str(root), *FORCED)
    assert r.code == 7
    errors = [ln for ln in r.err.splitlines() if ln.startswith("vfiokit: error:")]
    assert len(errors) == 1 and "update-initramfs -u -k all failed (exit 1: E: /boot is full)" in errors[0]
    assert _tree(root) == before


def unique_ids_host(tmp_path: Path) -> Path:
    """The same machine without the second NVMe: every id of group 15 is its own."""
    from hostfacts import B550_LIKE

    root = tmp_path / "root"
    HostTree(root, [s for s in B550_LIKE if s.address != "08:00.0"])
    grub_host(root, "proxmox8")
    debian_etc(root)
    return root


@needs_kmod
def test_unique_ids_are_bound_by_ids_with_softdeps_kmod_reads(tmp_path: Path, refresh: Path) -> None:
    root = unique_ids_host(tmp_path)
    r = cli("bind", "--persistent", "04:00", "--root", str(root), *FORCED)
    assert r.code == 0, r.err
    assert "by ids (1022:43ee, 1022:43eb, 10de:1430, 10de:0fba, 10ec:8168, 1b4b:9215, 10ec:8125)" in r.err
    shown = showconfig(root / "etc/modprobe.d")
    assert shown[0] == "options vfio_pci ids=1022:43ee,1022:43eb,10de:1430,10de:0fba,10ec:8168,1b4b:9215,10ec:8125"
    assert {"softdep nouveau pre: vfio-pci", "softdep snd_hda_intel pre: vfio-pci", "softdep nvidia pre: vfio-pci",
            "softdep r8169 pre: vfio-pci", "softdep ahci pre: vfio-pci", "softdep xhci_hcd pre: vfio-pci"} <= set(shown)
    assert not (root / HOOK).exists()
    assert cli("unbind", "--persistent", "04:00", "--root", str(root), "--yes").code == 0
    assert not (root / "etc/modprobe.d/vfiokit.conf").exists()


def test_a_read_only_modprobe_conf_is_one_line_and_nothing_is_half_written(tmp_path: Path, refresh: Path) -> None:
    # (root writes through a read-only folder, so the read-only file is the fault a test can make)
    root = unique_ids_host(tmp_path)
    conf = root / "etc/modprobe.d/vfiokit.conf"
    conf.write_text("options vfio-pci disable_vga=1\n")
    conf.chmod(0o444)
    before = _tree(root)
    r = cli("bind", "--persistent", "04:00", "--root", str(root), *FORCED)
    errors = [ln for ln in r.err.splitlines() if ln.startswith("vfiokit: error:")]
    assert r.code == 7 and errors == [f"vfiokit: error: {conf}: is read-only (mode 0444); not changed"]
    assert _tree(root) == before and not refresh.exists()


IOMEM = """00000000-00000fff : Reserved
e0000000-f1ffffff : PCI Bus 0000:00
  e0000000-efffffff : PCI Bus 0000:04
    e0000000-efffffff : 0000:04:00.0
      e0000000-e07e8fff : BOOTFB
fee00000-fee00fff : Local APIC
"""
RESOURCE = ("0x00000000f6000000 0x00000000f6ffffff 0x0000000000040200\n"
            "0x00000000e0000000 0x00000000efffffff 0x000000000014220c\n"
            + "0x0000000000000000 0x0000000000000000 0x0000000000000000\n" * 11)


@pytest.mark.parametrize(("release", "param"), [("6.8.12-4-pve", "initcall_blacklist=sysfb_init"),
                                                 ("5.4.203-1-pve", "video=efifb:off")])
def test_the_console_framebuffer_in_a_bar_is_named_with_its_parameter(tmp_path: Path, refresh: Path,
                                                                      release: str, param: str) -> None:
    root = b550(tmp_path)
    (root / "proc/iomem").write_text(IOMEM)
    (root / "proc/sys/kernel").mkdir(parents=True, exist_ok=True)
    (root / "proc/sys/kernel/osrelease").write_text(release + "\n")
    (root / "sys/bus/pci/devices/0000:04:00.0/resource").write_text(RESOURCE)
    r = cli("bind", "--persistent", "04:00", "--root", str(root), "--dry-run", "--force", "--accept-siblings")
    assert r.code == 0, r.err
    assert (f"0000:04:00.0: the console framebuffer (BOOTFB) sits in its BAR and keeps vfio-pci from reserving "
            f"it; 'vfiokit boot add {param}' releases it") in r.err
    # vfio_virqfd was folded into vfio in 6.2: listed for the older kernel only
    assert ("+vfio_virqfd" in r.out) == release.startswith("5.")


def test_no_framebuffer_note_without_root_readable_iomem(tmp_path: Path) -> None:
    root = b550(tmp_path)
    (root / "proc/iomem").write_text(IOMEM.replace("e0000000-e07e8fff", "00000000-00000000"))
    (root / "sys/bus/pci/devices/0000:04:00.0/resource").write_text(RESOURCE)
    r = cli("bind", "--persistent", "04:00", "--root", str(root), "--dry-run", "--force", "--accept-siblings")
    # (check's boot-GPU reason may still speak of the console: the BAR note is what must be absent)
    assert r.code == 0 and "sits in its BAR" not in r.err


def test_status_shows_the_driver_now_and_at_the_next_boot(kernel: KernelStandin, refresh: Path) -> None:
    root = str(kernel.root)
    assert cli("bind", "--persistent", "08:00.0", "--root", root, *FORCED).code == 0
    assert cli("bind", "0a:00.0", "--root", root, *FORCED).code == 0
    (kernel.root / "etc/modprobe.d/forum-recipe.conf").write_text("options vfio_pci ids=15b7:5006\n")
    r = cli("bind", "--status", "--root", root)
    assert r.code == 0, r.err
    assert r.out.splitlines()[0] == f"tree {root}"  # not this host: the source header comes first
    rows = {ln[2:9]: ln for ln in r.out.splitlines()}
    # bound now and at boot: the script names it
    assert rows["08:00.0"].split()[1:4] == ["vfio-pci", "vfio-pci", "by"]
    # a pasted recipe's ids= also takes the twin under / at the next boot: marked
    assert rows["01:00.0"].startswith("* 01:00.0") and rows["01:00.0"].split()[2:4] == ["nvme", "vfio-pci"]
    assert rows["01:00.0"].endswith("ids=15b7:5006 in /etc/modprobe.d/forum-recipe.conf")
    r = cli("unbind", "0a:00.0", "--root", root, "--yes")
    assert r.code == 0
    r = cli("bind", "--status", "02:00.0", "--root", root)
    assert [ln.split()[:4] for ln in r.out.splitlines()[2:]] == [["*", "02:00.0", "xhci_hcd", "vfio-pci"],
                                                                 ["*", "the", "driver", "changes"]]


def test_the_writer_can_undo_a_persistent_bind(tmp_path: Path, refresh: Path) -> None:
    # bind --persistent is journaled as its own kind, with its files and refresh allowed for undo
    from vfiokit.edits import persistent, writer

    root = b550(tmp_path)
    before = _tree(root)
    assert cli("bind", "--persistent", "08:00.0", "--root", str(root), *FORCED).code == 0
    plan = writer.undo_plan(str(root), persistent.KIND)
    assert plan.commands == (persistent.REFRESH,)
    writer.apply(plan)
    assert _tree(root) == before
    assert set(writer.UNDOABLE[persistent.KIND]) == set(persistent.FILES)


def test_script_is_the_live_plan_as_sh(kernel: KernelStandin, tmp_path: Path) -> None:
    import subprocess

    assert cli("bind", "0a:00.0", "--root", str(kernel.root), "--script").code == 8  # gated like a write
    r = cli("bind", "0a:00.0", "--root", str(kernel.root), "--script", "--force", "--accept-siblings")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0] == "#!/bin/sh" and "echo vfio-pci > /sys/bus/pci/devices/0000:0a:00.0/driver_override" in lines
    script = tmp_path / "bind.sh"
    script.write_text(r.out)
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    assert kernel.writes == []


def test_unbind_of_a_device_not_on_vfio_pci_is_nothing_to_do(kernel: KernelStandin) -> None:
    r = cli("unbind", "01:00.0", "--root", str(kernel.root), "--yes")
    assert r.code == 0 and r.err.startswith("vfiokit: nothing to do: 0000:01:00.0 not on vfio-pci")
    assert kernel.writes == []


# --- groups: the driver at the next boot, as bind --status reads it -------------------------------

def _devices(out: str) -> dict[str, dict]:
    import json

    doc = json.loads(out)
    return {d["address"][5:]: d for g in doc["groups"] for d in g["devices"]}


def test_groups_marks_a_device_modprobe_d_hands_to_vfio_pci_at_the_next_boot(tmp_path: Path) -> None:
    root = b550(tmp_path)
    plain = cli("groups", "--root", str(root)).out
    assert "next boot" not in plain
    (root / "etc/modprobe.d/nic.conf").write_text("options vfio-pci ids=10ec:8125\n")
    r = cli("groups", "--root", str(root))
    assert r.code == 0, r.err
    # only the line of the spare NIC changes, and only by its mark
    marked = [ln for ln in r.out.splitlines() if "next boot" in ln]
    assert len(marked) == 1 and marked[0].startswith("  0a:00.0 Ethernet controller")
    assert marked[0].endswith("driver r8169 · next boot: vfio-pci")
    assert r.out.replace(" · next boot: vfio-pci", "") == plain
    devs = _devices(cli("groups", "--root", str(root), "--json").out)
    assert devs["0a:00.0"]["driver_next_boot"] == "vfio-pci"
    assert devs["06:00.0"]["driver_next_boot"] == "r8169"  # its twin by vendor, not by ids: untouched
    assert devs["00:01.1"]["driver_next_boot"] is None  # a bridge: left to pcieport, not judged
    # a sample has no boot configuration: unknown, said as null for every device
    sample = _devices(cli("groups", "--sample", "asus-tuf-b550-plus", "--json").out)
    assert {d["driver_next_boot"] for d in sample.values()} == {None}


def test_groups_marks_a_device_bound_now_that_goes_back_at_the_next_boot(kernel: KernelStandin) -> None:
    root = str(kernel.root)
    assert cli("bind", "0a:00.0", "--root", root, *FORCED).code == 0
    r = cli("groups", "--root", root)
    # bind took group 15's every endpoint; the record gives each one back to its driver at boot
    marked = {ln[2:9]: ln.rsplit("  ", 1)[1] for ln in r.out.splitlines() if "next boot" in ln}
    assert marked == {"02:00.0": "driver vfio-pci · next boot: xhci_hcd",
                      "02:00.1": "driver vfio-pci · next boot: ahci",
                      "04:00.0": "driver vfio-pci · boot VGA · host needs the display · next boot: nouveau",
                      "04:00.1": "driver vfio-pci · next boot: snd_hda_intel",
                      "06:00.0": "driver vfio-pci · host needs the network · next boot: r8169",
                      "07:00.0": "driver vfio-pci · next boot: ahci",
                      "08:00.0": "driver vfio-pci · next boot: nvme",
                      "0a:00.0": "driver vfio-pci · next boot: r8169"}
    assert _devices(cli("groups", "--root", root, "--json").out)["0a:00.0"]["driver_next_boot"] == "r8169"


def test_groups_with_an_unreadable_bind_record_still_lists_and_says_why(tmp_path: Path) -> None:
    root = b550(tmp_path)
    (root / "var/backups/vfiokit").mkdir(parents=True)
    (root / "var/backups/vfiokit/bound.json").write_text("{oops")
    r = cli("groups", "--root", str(root))
    assert r.code == 0 and "0a:00.0 Ethernet controller" in r.out and "next boot" not in r.out
    assert ("the drivers at the next boot are unknown: /var/backups/vfiokit/bound.json: not a vfiokit "
            "bind record") in r.err
    assert cli("bind", "--status", "--root", str(root)).code == 3  # bind --status reads it strictly


def test_the_groups_marks_are_the_rows_of_bind_status_that_change() -> None:
    """`groups` asks only for the rows that change (`next_boot_changes`): on every sample and
    under any configuration those are exactly `bind --status`'s rows that differ, in order."""
    from dataclasses import replace

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from vfiokit.analyses.vfio_binding import VFIO, driver_status, next_boot_changes
    from vfiokit.sources import samples
    from vfiokit.sources.capture import build_topology

    tops = [build_topology(samples.load_raw(n), n) for n in samples.names()]
    drivers = st.sampled_from([None, VFIO, "ahci", "r8169"])

    @settings(max_examples=200, deadline=None)
    @given(st.data())
    def same_rows(data: st.DataObject) -> None:
        top = data.draw(st.sampled_from(tops))
        on_vfio = data.draw(st.sets(st.sampled_from(top.devices), max_size=3))
        top = replace(top, devices=tuple(d._replace(driver=VFIO) if d in on_vfio else d for d in top.devices))
        addresses = st.sampled_from([str(d.address) for d in top.devices])
        ids = st.sampled_from([*sorted({d.ids for d in top.devices if d.ids}), "8086:ffff"])
        cmdline = data.draw(st.lists(ids, max_size=2))
        modprobe = {i: "/etc/modprobe.d/x.conf" for i in data.draw(st.lists(ids, max_size=2))}
        hooks = tuple(data.draw(st.lists(addresses, max_size=3)))
        bound = data.draw(st.dictionaries(addresses, drivers, max_size=3))
        every = driver_status(top, cmdline, modprobe, hooks, bound)
        assert next_boot_changes(top, cmdline, modprobe, hooks, bound) == [r for r in every if r.differs]

    same_rows()
