"""`vfiokit boot` as a user runs it, against host folders given by --root (never the real /etc)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bootroot import Standins, cpu, grub_host, pbt_host, sh_value, write
from tests.conftest import cli
from vfiokit.edits import writer

ZFS_CMDLINE = "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n"


def _grub(tmp_path: Path, **kw: object) -> Path:
    kw.setdefault("running", "BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root "
                            "ro nomodeset quiet")
    return grub_host(tmp_path / "root", "proxmox8", **kw)  # type: ignore[arg-type]


# --- status -------------------------------------------------------------------------------------

def test_status_of_a_grub_host(tmp_path: Path) -> None:
    root = _grub(tmp_path)
    r = cli("boot", "status", "--root", str(root))
    assert r.code == 0, r.err
    assert "GRUB (legacy BIOS)" in r.out
    assert "decided by:   GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub line 9" in r.out
    assert "configured:   quiet" in r.out
    # installer.cfg's GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX nomodeset" is followed, not run
    assert "also (GRUB_CMDLINE_LINUX): nomodeset\n" in r.out
    assert "pending reboot: -nomodeset" not in r.out


def test_status_json_says_what_waits_for_refresh_and_reboot(tmp_path: Path) -> None:
    root = _grub(tmp_path, uefi=True)
    write(root, "boot/grub/grub.cfg", "menuentry 'Proxmox VE GNU/Linux' {\n"
          "\tlinux\t/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro  nomodeset quiet\n}\n")
    main = root / "etc/default/grub"
    main.write_text(main.read_text().replace('="quiet"', '="quiet intel_iommu=on"'))
    r = cli("boot", "status", "--root", str(root), "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["kind"] == "boot-status" and data["schema"] == 1
    b = data["boot"]
    assert (b["path"], b["firmware"], b["deciding_file"]) == ("grub", "uefi", "/etc/default/grub")
    assert b["refresh_command"] == ["update-grub"]
    assert b["pending_refresh"] == {"add": ["intel_iommu=on"], "remove": []}
    assert b["pending_reboot"] == {"add": ["intel_iommu=on"], "remove": []}


def test_status_names_the_drop_in_that_decides(tmp_path: Path) -> None:
    root = grub_host(tmp_path / "root", "ubuntu-cloud")
    r = cli("boot", "status", "--root", str(root))
    assert "/etc/default/grub.d/50-cloudimg-settings.cfg line 11" in r.out
    assert "(overrides /etc/default/grub)" in r.out


def test_status_of_systemd_boot_via_proxmox_boot_tool(tmp_path: Path) -> None:
    root = pbt_host(tmp_path / "root", "root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on\n")
    write(root, "etc/kernel/cmdline", ZFS_CMDLINE)  # configured since boot: intel_iommu=on dropped
    r = cli("boot", "status", "--root", str(root), "--json")
    b = json.loads(r.out)["boot"]
    assert b["path"] == "proxmox-boot-tool/systemd-boot"
    assert b["deciding_file"] == "/etc/kernel/cmdline"
    assert b["refresh_command"] == ["proxmox-boot-tool", "refresh"]
    assert b["pending_reboot"] == {"add": [], "remove": ["intel_iommu=on"]}
    assert any("systemd-boot 252" in e for e in b["evidence"])


def test_an_esp_holding_grub_ignores_etc_kernel_cmdline(tmp_path: Path) -> None:
    root = pbt_host(tmp_path / "root", ZFS_CMDLINE, loader="grub")
    write(root, "var/tmp/espmounts/7B51-1A2C/EFI/proxmox/grubx64.efi", b"MZ")
    r = cli("boot", "status", "--root", str(root), "--json")
    b = json.loads(r.out)["boot"]
    assert b["path"] == "proxmox-boot-tool/grub" and b["deciding_file"] == "/etc/default/grub"
    assert "/etc/kernel/cmdline exists but is ignored: the ESPs hold GRUB" in b["evidence"]


# --- refusals -----------------------------------------------------------------------------------

def test_an_unknown_boot_loader_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, "etc/kernel/cmdline", ZFS_CMDLINE)
    r = cli("boot", "add", "iommu=pt", "--root", str(root), "--yes")
    assert r.code == 8 and "unknown boot loader" in r.err and "no /etc/kernel/proxmox-boot-uuids" in r.err


def test_boot_status_reports_an_unknown_boot_loader_it_only_reads(tmp_path: Path) -> None:
    # reading refuses nothing: the loader is reported unknown, with what is known, and exit 0
    root = tmp_path / "root"
    write(root, "etc/kernel/cmdline", ZFS_CMDLINE)
    write(root, "proc/cmdline", "BOOT_IMAGE=/vmlinuz-6.8.12-4-pve root=ZFS=rpool/ROOT/pve-1 quiet\n")
    (root / "sys/class/iommu/dmar0").mkdir(parents=True)
    r = cli("boot", "status", "--root", str(root))
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].startswith("Boot loader: unknown (unknown boot loader below")
    assert lines[1] == "Running command line (/proc/cmdline): BOOT_IMAGE=/vmlinuz-6.8.12-4-pve " \
                       "root=ZFS=rpool/ROOT/pve-1 quiet"
    assert lines[2] == "IOMMU: on (dmar0)"
    r = cli("boot", "status", "--root", str(root), "--json")
    boot = json.loads(r.out)["boot"]
    assert r.code == 0 and boot["loader"] == "unknown" and boot["iommu"] == {"on": True, "units": ["dmar0"],
                                                                              "why_off": None}


def test_a_kernel_cmdline_without_root_is_refused(tmp_path: Path, standins: Standins) -> None:
    root = pbt_host(tmp_path / "root", "boot=zfs quiet\n")
    r = cli("boot", "add", "iommu=pt", "--root", str(root), "--yes")
    assert r.code == 8 and "/etc/kernel/cmdline: has no root= parameter" in r.err
    assert (root / "etc/kernel/cmdline").read_text() == "boot=zfs quiet\n" and standins.calls() == []


def test_removing_root_is_refused(tmp_path: Path, standins: Standins) -> None:
    root = pbt_host(tmp_path / "root", ZFS_CMDLINE)
    r = cli("boot", "remove", "root", "--root", str(root), "--yes")
    assert r.code == 8 and "unbootable" in r.err


def test_esps_that_cannot_be_identified_are_refused(tmp_path: Path) -> None:
    root = pbt_host(tmp_path / "root", ZFS_CMDLINE, loader="unknown")
    (root / "sys/firmware/efi/efivars").rmdir()
    r = cli("boot", "status", "--root", str(root))  # reading reports it: never "refused" (8)
    assert r.code == 0 and r.out.startswith("Boot loader: unknown (") and "systemd-boot or GRUB" in r.out
    r = cli("boot", "add", "iommu=pt", "--root", str(root), "--yes")
    assert r.code == 8 and "systemd-boot or GRUB" in r.err


def test_a_boot_file_that_is_a_folder_is_named_in_the_json_error(tmp_path: Path) -> None:
    root = _grub(tmp_path)
    (root / "etc/kernel").mkdir(parents=True, exist_ok=True)
    (root / "etc/kernel/cmdline").mkdir()
    r = cli("boot", "status", "--root", str(root), "--json")
    doc = json.loads(r.out)
    assert (r.code, doc["kind"], doc["file"]) == (3, "error", str(root / "etc/kernel/cmdline"))
    assert "etc/kernel/cmdline: is a folder" in r.err


def test_a_bad_parameter_is_one_line(tmp_path: Path) -> None:
    root = _grub(tmp_path)
    r = cli("boot", "add", "quiet splash", "--root", str(root), "--yes")
    assert r.code == 3 and r.err.count("\n") == 1 and "'quiet splash'" in r.err


# --- changing -----------------------------------------------------------------------------------

def test_dry_run_shows_the_exact_diff_and_writes_nothing(tmp_path: Path, standins: Standins) -> None:
    root = _grub(tmp_path)
    before = (root / "etc/default/grub").read_bytes()
    r = cli("boot", "add", "intel_iommu=on", "--root", str(root), "--dry-run")
    assert r.code == 0
    assert "--- /etc/default/grub\n+++ /etc/default/grub\n" in r.out
    assert ('-GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
            '+GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on"\n') in r.out
    assert "then run: update-grub" in r.out and "reboot to apply" in r.err
    assert (root / "etc/default/grub").read_bytes() == before and standins.calls() == []
    assert not (root / writer.BACKUP_DIR).exists()


def test_it_asks_first_and_no_means_nothing_changes(tmp_path: Path, standins: Standins) -> None:
    root = _grub(tmp_path)
    before = (root / "etc/default/grub").read_bytes()
    r = cli("boot", "add", "intel_iommu=on", "--root", str(root), stdin="n\n")
    assert r.code == 9 and "Apply this change?" in r.err
    assert (root / "etc/default/grub").read_bytes() == before and standins.calls() == []
    r = cli("boot", "add", "intel_iommu=on", "--root", str(root), stdin="y\n")
    assert r.code == 0 and sh_value(root / "etc/default") == "quiet intel_iommu=on"


def test_running_twice_changes_nothing_the_second_time(tmp_path: Path, standins: Standins) -> None:
    root = _grub(tmp_path)
    assert cli("boot", "add", "vfio-pci.ids=10de:1b80", "--root", str(root), "--yes").code == 0
    r = cli("boot", "add", "vfio_pci.ids=10de:1b80", "--root", str(root), "--yes")
    assert r.code == 0 and "nothing to change" in r.err and r.out == ""
    assert standins.calls() == ["update-grub "]
    assert len(writer.read_journal(str(root))) == 1


def test_systemd_boot_edits_etc_kernel_cmdline_and_refreshes(tmp_path: Path, standins: Standins) -> None:
    root = pbt_host(tmp_path / "root", ZFS_CMDLINE)
    grub_before = (root / "etc/default/grub").read_bytes()
    r = cli("boot", "add", "intel_iommu=on", "iommu=pt", "--root", str(root), "--yes")
    assert r.code == 0, r.err
    want = "root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on iommu=pt\n"
    assert (root / "etc/kernel/cmdline").read_text() == want
    assert (root / "etc/default/grub").read_bytes() == grub_before
    assert standins.calls() == ["proxmox-boot-tool refresh"]


def test_a_failing_refresh_puts_the_file_back(tmp_path: Path, standins: Standins,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root = pbt_host(tmp_path / "root", ZFS_CMDLINE)
    monkeypatch.setenv("STANDIN_FAIL", "2")
    monkeypatch.setenv("STANDIN_MSG", "/etc/kernel/proxmox-boot-uuids does not exist.")
    r = cli("boot", "add", "intel_iommu=on", "--root", str(root), "--yes")
    assert r.code == 7
    assert r.err.splitlines()[-1] == (
        "vfiokit: error: proxmox-boot-tool refresh failed (exit 2: E: /etc/kernel/proxmox-boot-uuids "
        "does not exist.); /etc/kernel/cmdline restored")
    assert (root / "etc/kernel/cmdline").read_text() == ZFS_CMDLINE


def test_remove_notes_what_grub_cmdline_linux_still_sets(tmp_path: Path, standins: Standins) -> None:
    root = grub_host(tmp_path / "root", "debian12")
    main = root / "etc/default/grub"
    main.write_text(main.read_text().replace('GRUB_CMDLINE_LINUX=""', 'GRUB_CMDLINE_LINUX="nomodeset"')
                    .replace('="quiet"', '="quiet nomodeset"'))
    r = cli("boot", "remove", "nomodeset", "--root", str(root), "--yes")
    assert r.code == 0 and "nomodeset is also in GRUB_CMDLINE_LINUX" in r.err
    assert sh_value(root / "etc/default") == "quiet"


def test_undo_shows_the_diff_and_restores(tmp_path: Path, standins: Standins) -> None:
    root = _grub(tmp_path)
    before = (root / "etc/default/grub").read_bytes()
    assert cli("boot", "add", "iommu=pt", "--root", str(root), "--yes").code == 0
    r = cli("boot", "undo", "--root", str(root), "--dry-run")
    assert '-GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n+GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n' in r.out
    assert cli("boot", "undo", "--root", str(root), "--yes").code == 0
    assert (root / "etc/default/grub").read_bytes() == before
    assert standins.calls() == ["update-grub ", "update-grub "]
    r = cli("boot", "undo", "--root", str(root), "--yes")
    assert r.code == 4 and "nothing to undo" in r.err


# --- intents ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("vendor", "kernel", "units", "pt", "added"), [
    ("GenuineIntel", "6.5.13-6-pve", (), False, ["intel_iommu=on"]),
    ("GenuineIntel", "6.5.13-6-pve", (), True, ["intel_iommu=on", "iommu=pt"]),
    ("GenuineIntel", "6.8.12-4-pve", (), False, []),
    ("AuthenticAMD", "5.15.0-91-generic", (), False, []),
    ("GenuineIntel", "6.5.13-6-pve", ("dmar0", "dmar1"), False, []),
    ("GenuineIntel", "6.5.13-6-pve", ("dmar0",), True, ["iommu=pt"]),
])
def test_boot_iommu_adds_only_what_this_host_needs(tmp_path: Path, standins: Standins, vendor: str,
                                                   kernel: str, units: tuple[str, ...], pt: bool,
                                                   added: list[str]) -> None:
    root = _grub(tmp_path)
    cpu(root, vendor, kernel, units)
    r = cli("boot", "iommu", *(["--pt"] if pt else []), "--root", str(root), "--yes")
    assert r.code == 0, r.err
    assert sh_value(root / "etc/default") == " ".join(["quiet", *added])


def test_boot_iommu_without_cpu_facts_refuses(tmp_path: Path) -> None:
    r = cli("boot", "iommu", "--root", str(_grub(tmp_path)), "--yes")
    assert r.code == 8 and "CPU vendor or kernel version unknown" in r.err


def test_acs_override_warns_and_merges(tmp_path: Path, standins: Standins) -> None:
    root = _grub(tmp_path)
    assert cli("boot", "add", "pcie_acs_override=downstream", "--root", str(root), "--yes").code == 0
    r = cli("boot", "acs-override", "--root", str(root), "--yes")
    assert r.code == 0, r.err
    assert "peer-to-peer DMA without hardware isolation" in r.err and "patched kernels" in r.err
    assert sh_value(root / "etc/default") == "quiet pcie_acs_override=downstream,multifunction"


def test_acs_override_rejects_an_unknown_mode(tmp_path: Path) -> None:
    r = cli("boot", "acs-override", "downstrem", "--root", str(_grub(tmp_path)), "--yes")
    assert r.code == 3 and "'downstrem' is not an option" in r.err
    r = cli("boot", "acs-override", "id:10de:zz", "--root", str(_grub(tmp_path)), "--yes")
    assert r.code == 3 and "'id:10de:zz' is not an option" in r.err
    r = cli("boot", "acs-override", "none", "--root", str(_grub(tmp_path)), "--yes")
    assert r.code == 3 and "boot remove pcie_acs_override" in r.err


def test_status_shows_a_value_it_will_not_edit(tmp_path: Path) -> None:
    root = grub_host(tmp_path / "root", "ubuntu-kdump", running="BOOT_IMAGE=/vmlinuz root=/dev/sda2 ro quiet")
    r = cli("boot", "status", "--root", str(root), "--json")
    assert r.code == 0, r.err
    b = json.loads(r.out)["boot"]
    assert b["deciding_file"] == "/etc/default/grub.d/kdump-tools.cfg"
    assert b["not_editable_because"] == "GRUB_CMDLINE_LINUX_DEFAULT is built from other variables or commands"
    crash = "crashkernel=2G-4G:320M,4G-32G:512M,32G-64G:1024M,64G-128G:2048M,128G-:4096M"
    assert b["configured"] == f"quiet splash {crash}"  # the append is followed, not run
    assert b["pending_reboot"] == {"add": ["splash", crash], "remove": []}


def test_acs_override_says_when_it_cannot_predict(tmp_path: Path, standins: Standins) -> None:
    r = cli("boot", "acs-override", "--root", str(_grub(tmp_path)), "--dry-run")
    assert r.code == 0 and "no group prediction here" in r.err


def test_acs_override_shows_what_simulate_predicts(tmp_path: Path) -> None:
    from vfiokit.analyses import grouping
    from vfiokit.sources import samples, sysfs, tree

    root = tmp_path / "root"
    tree.materialize(samples.load_raw("asus-tuf-b550-plus"), root)
    grub_host(root, "proxmox8")
    after = grouping.predict_groups(sysfs.read_topology(root), grouping.parse_override("downstream,multifunction"))
    r = cli("boot", "acs-override", "--root", str(root), "--dry-run")
    assert r.code == 0, r.err
    assert f"with pcie_acs_override=downstream,multifunction: {len(after)} groups" in r.err


def test_a_read_only_grub_file_is_one_line_and_untouched(tmp_path: Path, standins: Standins) -> None:
    root = _grub(tmp_path)
    main = root / "etc/default/grub"
    before = main.read_bytes()
    main.chmod(0o444)
    r = cli("boot", "add", "iommu=pt", "--root", str(root), "--yes")
    (error,) = [ln for ln in r.err.splitlines() if ln.startswith("vfiokit: error: ")]
    assert r.code == 7 and error.endswith("/etc/default/grub: is read-only (mode 0444); not changed")
    assert main.read_bytes() == before and standins.calls() == []


def test_older_hosts_refresh_with_pve_efiboot_tool(tmp_path: Path, standins: Standins,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (standins.bin / "proxmox-boot-tool").unlink()  # PVE 6.3 and older only have the old name
    monkeypatch.setenv("PATH", f"{standins.bin}:/usr/bin:/bin")
    root = pbt_host(tmp_path / "root", ZFS_CMDLINE)
    assert cli("boot", "add", "iommu=pt", "--root", str(root), "--yes").code == 0
    assert standins.calls() == ["pve-efiboot-tool refresh"]


def test_removing_what_only_grub_cmdline_linux_sets_says_it_stays(tmp_path: Path, standins: Standins) -> None:
    # The Proxmox installer's drop-in adds nomodeset to GRUB_CMDLINE_LINUX: removing it from the
    # default changes nothing, and "already reads that way" alone would let the user believe the
    # next boot goes without it.
    root = _grub(tmp_path)
    r = cli("boot", "remove", "nomodeset", "--root", str(root), "--yes")
    assert r.code == 0 and "nothing to change" in r.err
    assert "nomodeset is also in GRUB_CMDLINE_LINUX" in r.err
    assert standins.calls() == []


def test_status_shows_a_kernel_cmdline_it_would_not_edit(tmp_path: Path) -> None:
    # status is how the user finds out what is wrong: it shows the file and why vfiokit will not
    # change it, as it does for a GRUB line built by shell code, instead of failing.
    root = pbt_host(tmp_path / "root", "boot=zfs quiet\n")
    r = cli("boot", "status", "--root", str(root))
    assert r.code == 0, r.err
    assert "configured:   boot=zfs quiet" in r.out
    assert "vfiokit will not edit it: has no root= parameter" in r.out
    r = cli("boot", "status", "--root", str(root), "--json")
    assert json.loads(r.out)["boot"]["not_editable_because"].startswith("has no root= parameter")


def test_undo_says_a_reboot_is_needed_too(tmp_path: Path, standins: Standins) -> None:
    # Undoing a command-line change is a command-line change: the running kernel keeps the
    # parameters until the next boot, as after 'boot add'.
    root = pbt_host(tmp_path / "root", ZFS_CMDLINE)
    assert cli("boot", "add", "iommu=pt", "--root", str(root), "--yes").code == 0
    r = cli("boot", "undo", "--root", str(root), "--dry-run")
    assert r.code == 0 and "then run: proxmox-boot-tool refresh" in r.out
    assert "reboot to apply" in r.err


def test_adding_what_grub_cmdline_linux_also_sets_says_the_kernel_gets_both(tmp_path: Path,
                                                                          standins: Standins) -> None:
    # update-grub writes GRUB_CMDLINE_LINUX then GRUB_CMDLINE_LINUX_DEFAULT on the linux line; for
    # vfio-pci.ids the later one replaces the earlier (a module parameter is set once per
    # occurrence), so 10de:1b80 would silently stop being bound.
    root = grub_host(tmp_path / "root", "debian12")
    main = root / "etc/default/grub"
    main.write_text(main.read_text().replace('GRUB_CMDLINE_LINUX=""', 'GRUB_CMDLINE_LINUX="vfio-pci.ids=10de:1b80"'))
    r = cli("boot", "add", "vfio-pci.ids=10de:10f0", "--root", str(root), "--dry-run")
    assert r.code == 0, r.err
    assert "vfio-pci.ids is also in GRUB_CMDLINE_LINUX (vfio-pci.ids=10de:1b80)" in r.err


@pytest.mark.parametrize(("vendor", "kernel", "off", "left"), [
    ("GenuineIntel", "6.8.12-4-pve", "intel_iommu=off", "quiet"),
    ("GenuineIntel", "6.5.13-6-pve", "intel_iommu=off", "quiet intel_iommu=on"),
    ("AuthenticAMD", "6.8.12-4-pve", "amd_iommu=off", "quiet"),
    ("AuthenticAMD", "6.8.12-4-pve", "iommu=off", "quiet"),
])
def test_boot_iommu_takes_off_what_turns_it_off(tmp_path: Path, standins: Standins, vendor: str, kernel: str,
                                                off: str, left: str) -> None:
    # No IOMMU unit because the command line says off: blaming the firmware would mislead, and
    # "turn the IOMMU on" must take the off switch away.
    root = _grub(tmp_path, running=f"BOOT_IMAGE=/boot/vmlinuz-{kernel} root=/dev/mapper/pve-root ro quiet {off}")
    main = root / "etc/default/grub"
    main.write_text(main.read_text().replace('="quiet"', f'="quiet {off}"'))
    cpu(root, vendor, kernel)
    r = cli("boot", "iommu", "--root", str(root), "--yes")
    assert r.code == 0, r.err
    assert f"{off} turns the IOMMU off" in r.err and "firmware" not in r.err
    assert sh_value(root / "etc/default") == left


def test_a_refusal_names_the_file_as_the_host_sees_it(tmp_path: Path) -> None:
    # Like every other message, the path is /etc/..., not the --root folder's own path.
    root = grub_host(tmp_path / "root", "ubuntu-kdump")
    r = cli("boot", "add", "iommu=pt", "--root", str(root), "--yes")
    assert r.code == 8
    assert r.err.startswith("vfiokit: error: /etc/default/grub.d/kdump-tools.cfg: line ")
