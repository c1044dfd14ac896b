"""`vfiokit doctor`: a healthy host says ok everywhere, then each failure mode, one at a time, on a
hand-built tree (the B550 sample laid out as files, plus the /proc, /etc and log files doctor
reads), is named by its check with its evidence and fix."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import cli
from vfiokit.sources import samples
from vfiokit.sources.tree import materialize

B550 = "asus-tuf-b550-plus"
#: The passed device of the healthy host: the WD NVMe (15b7:5006) alone in IOMMU group 16.
NVME = "0000:0b:00.0"
CMDLINE = "BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro quiet iommu=pt"
KERN_LOG = ("Dec  1 10:00:00 pve kernel: Linux version 6.8.12-4-pve (build@proxmox) #1 SMP\n"
            "Dec  1 10:00:00 pve kernel: AMD-Vi: Interrupt remapping enabled\n"
            "Dec  1 10:00:00 pve kernel: iommu: Default domain type: Translated\n")
VM = {"machine": "q35", "bios": "ovmf", "efidisk0": "local-lvm:vm-100-disk-0,efitype=4m,size=4M",
      "balloon": "0", "memory": "8192", "onboot": "1", "hostpci0": f"{NVME},pcie=1"}


def _files(root: Path, files: dict[str, str | None]) -> None:
    for rel, text in files.items():
        p = root / rel.lstrip("/")
        if text is None:
            if p.is_dir():
                import shutil

                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
            continue
        if rel.endswith("/"):  # an empty folder
            p.mkdir(parents=True, exist_ok=True)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def _vm_conf(opts: dict[str, str | None]) -> str:
    return "".join(f"{k}: {v}\n" for k, v in opts.items() if v is not None)


def build(tmp_path: Path, *, devices: Callable[[dict], None] | None = None, cmdline: str = CMDLINE,
          release: str = "6.8.12-4-pve", vendor: str = "AuthenticAMD", flags: str = "fpu svm",
          vm: dict[str, str | None] | None = None, files: dict[str, str | None] | None = None) -> Path:
    """A healthy Proxmox host passing the NVMe to VM 100; each argument changes one thing."""
    raw = copy.deepcopy(samples.load_raw(B550))
    raw["devices"][NVME]["links"]["driver"] = "vfio-pci"
    raw["host"].update(cmdline=cmdline, kernel_release=release)
    if devices:
        devices(raw)
    root = materialize(raw, tmp_path / "root")
    default = " ".join(t for t in cmdline.split() if not t.startswith(("BOOT_IMAGE", "root=", "ro")))
    linux = " ".join(t for t in cmdline.split() if not t.startswith("BOOT_IMAGE"))
    _files(root, {
        "/proc/cpuinfo": f"vendor_id\t: {vendor}\nflags\t\t: {flags}\n",
        "/sys/firmware/acpi/tables/IVRS": "",
        "/sys/firmware/acpi/tables/APIC": "",
        "/var/log/kern.log": KERN_LOG,
        "/proc/modules": "vfio_pci 16384 0 - Live 0x0\nvfio_iommu_type1 45056 0 - Live 0x0\n"
                         "vfio 69632 2 vfio_pci,vfio_iommu_type1, Live 0x0\n",
        "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts": "N\n",
        "/etc/modules-load.d/vfio.conf": "vfio\nvfio_iommu_type1\nvfio_pci\n",
        "/etc/initramfs-tools/modules": "# List of modules\nvfio\nvfio_iommu_type1\nvfio_pci\n",
        "/proc/iomem": "e0000000-efffffff : PCI Bus 0000:00\n"
                       "  e0000000-e0ffffff : 0000:04:00.0\n"
                       "    e0000000-e07fffff : BOOTFB\n"
                       "  fc900000-fc903fff : 0000:0b:00.0\n"
                       "    fc900000-fc903fff : nvme\n",
        "/etc/default/grub": f'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="{default}"\nGRUB_CMDLINE_LINUX=""\n',
        "/boot/grub/grub.cfg": f"menuentry 'Proxmox' {{\n\tlinux /boot/vmlinuz-{release} {linux}\n}}\n",
        "/etc/hostname": "pve\n",
        "/etc/pve/qemu-server/100.conf": _vm_conf({**VM, **(vm or {})}),
        **(files or {}),
    })
    return root


def doctor(root: Path, *args: str) -> tuple[int, dict]:
    r = cli("doctor", "--root", str(root), "--json", *args)
    assert r.code in (0, 10, 11), r.err
    return r.code, json.loads(r.out)


def finding(report: dict, check_id: str, subject: str | None = None) -> dict:
    found = [c for c in report["checks"] if c["id"] == check_id and (subject is None or c["subject"] == subject)]
    assert len(found) == 1, [c["id"] for c in report["checks"]]
    return found[0]


def test_a_healthy_host_is_ok_everywhere(tmp_path):
    code, report = doctor(build(tmp_path))
    bad = [(c["id"], c["status"], c["evidence"]) for c in report["checks"] if c["status"] != "ok"]
    assert bad == [] and code == 0
    ids = [c["id"] for c in report["checks"]]
    # firmware -> kernel -> modules -> devices -> VMs, the hypervisor flag said first
    assert ids[0] == "firmware.hypervisor"
    groups = [c["group"] for c in report["checks"]]
    assert groups == sorted(groups, key=["firmware", "kernel", "modules", "devices", "vms"].index)
    assert finding(report, "kernel.irq_remap")["evidence"].endswith("AMD-Vi: Interrupt remapping enabled")
    assert "/var/log/kern.log" in finding(report, "kernel.irq_remap")["evidence"]
    assert finding(report, "devices.group", NVME)["status"] == "ok"
    assert finding(report, "vms.pcie_q35", "VM 100")["status"] == "ok"


def _set_ids(addr: str, vendor: int, device: int) -> Callable[[dict], None]:
    def change(raw: dict) -> None:
        cfg = bytes.fromhex(raw["devices"][addr]["config"])
        raw["devices"][addr]["config"] = (vendor.to_bytes(2, "little") + device.to_bytes(2, "little")
                                          + cfg[4:]).hex()
    return change


def _attr(addr: str, **attrs: str) -> Callable[[dict], None]:
    def change(raw: dict) -> None:
        raw["devices"][addr]["attrs"].update(attrs)
    return change


def _driver(addr: str, driver: str) -> Callable[[dict], None]:
    def change(raw: dict) -> None:
        raw["devices"][addr]["links"]["driver"] = driver
    return change


#: What a host whose kernel runs without an IOMMU shows: both folders there, empty.
NO_GROUPS = {"/sys/class/iommu": None, "/sys/kernel/iommu_groups": None, "/sys/class/iommu/": "",
             "/sys/kernel/iommu_groups/": ""}
LOG_NO_IR = KERN_LOG.replace("AMD-Vi: Interrupt remapping enabled", "AMD-Vi: Found IOMMU cap 0x40")

#: Each failure mode: how the healthy host is changed, the check that must name it, its status,
#: and a piece of its fix (or evidence) the user acts on.
MODES = {
    "inside-a-vm": (dict(flags="fpu svm hypervisor"), "firmware.hypervisor", None, "warn", "on the Proxmox host"),
    "virtualization-off-in-firmware": (dict(flags="fpu sse2"), "firmware.virt", None, "fail", "AMD SVM"),
    "no-acpi-iommu-table": (dict(files={"/sys/firmware/acpi/tables/IVRS": None}), "firmware.acpi_iommu",
                            None, "fail", "firmware setup"),
    "iommu-off-on-cmdline": (dict(cmdline=CMDLINE + " amd_iommu=off"), "kernel.iommu_off", None, "fail",
                             "vfiokit boot remove amd_iommu=off"),
    "intel-before-6.8-without-intel_iommu=on": (dict(vendor="GenuineIntel", flags="fpu vmx", release="6.5.13-1-pve",
                                                     cmdline=CMDLINE.replace("6.8.12-4", "6.5.13-1"),
                                                     files=NO_GROUPS),
                                                "kernel.intel_iommu_on", None, "fail", "vfiokit boot iommu"),
    "kernel-iommu-inactive": (dict(files=NO_GROUPS), "kernel.iommu", None, "fail", "no IOMMU group"),
    "no-interrupt-remapping": (dict(files={"/var/log/kern.log": LOG_NO_IR}), "kernel.irq_remap", None, "fail",
                               "vfio_iommu_type1.allow_unsafe_interrupts=1"),
    "firmware-bug-disables-remapping": (
        dict(files={"/var/log/kern.log": KERN_LOG.replace(
            "AMD-Vi: Interrupt remapping enabled",
            "AMD-Vi: [Firmware Bug]: : No southbridge IOAPIC found\n"
            "Dec  1 10:00:00 pve kernel: AMD-Vi: Disabling interrupt remapping")}),
        "kernel.irq_remap", None, "fail", "kern.log): Dec  1 10:00:00 pve kernel: AMD-Vi: Disabling interrupt"),
    "unsafe-interrupts-allowed": (dict(files={"/var/log/kern.log": LOG_NO_IR,
                                              "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts": "Y"}),
                                  "kernel.irq_remap", None, "warn", "allow_unsafe_interrupts: Y"),
    "no-iommu-pt": (dict(cmdline=CMDLINE.replace(" iommu=pt", "")), "kernel.iommu_pt", None, "warn",
                    "vfiokit boot iommu --pt"),
    "cmdline-configured-not-running": (
        dict(files={"/etc/default/grub": 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt pcie_aspm=off"\n',
                    "/boot/grub/grub.cfg": "linux /boot/vmlinuz root=/dev/x ro quiet iommu=pt pcie_aspm=off\n"}),
        "kernel.cmdline_applied", None, "warn", "reboot"),
    "cmdline-edited-not-refreshed": (
        dict(files={"/etc/default/grub": 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt pcie_aspm=off"\n'}),
        "kernel.cmdline_applied", None, "warn", "update-grub"),
    "acs-override-on-a-kernel-that-ignores-it": (
        dict(release="6.8.0-49-generic", cmdline=CMDLINE + " pcie_acs_override=downstream",
             files={"/var/log/kern.log": KERN_LOG + 'Dec  1 10:00:00 pve kernel: Unknown kernel command line '
                    'parameters "pcie_acs_override=downstream", will be passed to user space.\n'}),
        "kernel.acs_override", None, "warn", "vfiokit boot remove pcie_acs_override"),
    "vfio-not-loaded": (dict(files={"/proc/modules": "nvme 1 0 - Live 0x0\n", "/sys/module/vfio_iommu_type1": None}),
                        "modules.loaded", None, "warn",
                        "modprobe vfio vfio_iommu_type1 vfio_pci"),
    "vfio-not-loaded-at-boot": (dict(files={"/etc/modules-load.d/vfio.conf": None}), "modules.at_boot", None,
                                "warn", "vfiokit bind"),
    "vfio-not-in-initramfs": (dict(files={"/etc/initramfs-tools/modules": "# List of modules\n"}),
                              "modules.initramfs", None, "warn", "vfiokit bind"),
    "stale-vfio_virqfd-on-6.2-or-later": (
        dict(files={"/etc/modules": "vfio\nvfio_virqfd\n"}), "modules.virqfd", None, "warn", "/etc/modules:2"),
    "group-shared-with-what-the-host-needs": (dict(vm={"hostpci0": "0000:07:00.0"}), "devices.group",
                                              "0000:07:00.0", "fail", "vfiokit check 07:00.0"),
    "host-driver-took-it-before-vfio-pci": (
        dict(devices=_driver(NVME, "nvme"), files={"/etc/modprobe.d/vfio.conf": "options vfio-pci ids=15b7:5006\n"}),
        "devices.driver", NVME, "fail", "softdep nvme pre: vfio-pci"),
    "bound-to-a-host-driver": (dict(devices=_driver(NVME, "nvme")), "devices.driver", NVME, "warn",
                               "vfiokit bind 0b:00.0"),
    "amd-gpu-without-vendor-reset": (dict(devices=_set_ids(NVME, 0x1002, 0x731F)), "devices.reset", NVME, "warn",
                                     "vendor-reset"),
    "no-reset-method": (dict(devices=_attr(NVME, reset_method="")), "devices.reset", NVME, "warn",
                        "reset_method empty"),
    "framebuffer-in-the-bar": (dict(vm={"hostpci0": "0000:04:00", "hostpci1": None}), "devices.framebuffer",
                               "0000:04:00.0", "fail", "initcall_blacklist=sysfb_init"),
    "bar-not-reserved-in-the-log": (
        dict(files={"/var/log/kern.log": KERN_LOG + "Dec  1 10:01:00 pve kernel: vfio-pci 0000:0b:00.0: BAR 0: "
                    "can't reserve [mem 0xfc900000-0xfc903fff 64bit]\n", "/proc/iomem": None}),
        "devices.framebuffer", NVME, "fail", "BAR 0: can't reserve"),
    "boot-gpu-without-a-second-gpu": (dict(vm={"hostpci0": "0000:04:00"}), "devices.boot_gpu", "0000:04:00.0",
                                      "fail", "second GPU"),
    "gpu-audio-not-passed": (dict(vm={"hostpci0": "0000:04:00.0"}), "devices.gpu_audio", "0000:04:00.0", "warn",
                             "0000:04:00"),
    "pcie-without-q35": (dict(vm={"machine": None}), "vms.pcie_q35", "VM 100", "fail", "qm set 100 --machine q35"),
    "primary-gpu-without-ovmf": (dict(vm={"bios": None, "hostpci0": f"{NVME},pcie=1,x-vga=1"}),
                                 "vms.primary_gpu", "VM 100", "warn", "--bios ovmf"),
    "balloon-with-a-passed-device": (dict(vm={"balloon": None}), "vms.balloon", "VM 100", "warn",
                                     "qm set 100 --balloon 0"),
    "device-shared-with-another-onboot-vm": (
        dict(files={"/etc/pve/qemu-server/101.conf": _vm_conf({**VM, "hostpci0": NVME})}),
        "vms.shared", "VM 100", "fail", "--onboot 0"),
    "mapping-iommugroup-changed": (
        dict(vm={"hostpci0": "mapping=wd,pcie=1"},
             files={"/etc/pve/mapping/pci.cfg": "wd\n\tmap node=pve,path=0000:0b:00.0,id=15b7:5006,iommugroup=9\n"}),
        "vms.devices", "VM 100", "fail", "iommugroup 9 != 16"),
    "passed-device-gone": (dict(vm={"hostpci0": "0000:42:00.0"}), "vms.devices", "VM 100", "fail", "0000:42:00.0"),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_each_failure_mode_is_named_with_its_fix(tmp_path, mode):
    change, check_id, subject, status, words = MODES[mode]
    code, report = doctor(build(tmp_path, **change))
    f = finding(report, check_id, subject)
    assert f["status"] == status, f
    assert words in f"{f['fix']} {f['evidence']} {f['message']}", f
    assert code == (11 if status == "fail" else 10 if all(c["status"] != "fail" for c in report["checks"]) else 11)


def test_the_b550_sample_names_the_marvell_group_problem_and_the_boot_gpu():
    r = cli("doctor", "07:00.0", "--sample", B550)
    assert r.code == 11
    lines = r.out.splitlines()
    assert lines[0] == f"sample {B550} (not this host)"
    group = next(ln for ln in lines if "(devices.group)" in ln)
    assert group.lstrip().startswith("fail 07:00.0 Marvell Technology Group Ltd. 88SE9215")
    assert "IOMMU group 15" in group and "04:00.0" in group and "0a:00.0" in group
    boot = next(ln for ln in lines if "(devices.boot_gpu)" in ln)
    assert "04:00.0 NVIDIA Corporation GM206GL [Quadro M2000]: boot GPU" in boot
    assert lines[-1] == "fail: 9 ok, 2 warning(s), 1 failure(s), 7 not checked"
    # A sample captured before doctor says which facts it lacks, and those checks are not guessed.
    assert "captured before doctor" in r.err


def test_doctor_on_a_snapshot_says_what_doctor_on_the_tree_says(tmp_path):
    root = build(tmp_path, devices=_driver(NVME, "nvme"))
    snap = tmp_path / "host.json"
    assert cli("snapshot", "--root", str(root), "-o", str(snap)).code == 0
    _, live = doctor(root)
    r = cli("doctor", "--snapshot", str(snap), "--json")
    assert r.code == 10
    offline = json.loads(r.out)
    # The boot configuration (/etc/default/grub) is not in a snapshot: that one check is not made.
    drop = lambda rep: [(c["id"], c["subject"], c["status"], c["evidence"]) for c in rep["checks"]  # noqa: E731
                        if c["id"] != "kernel.cmdline_applied"]
    assert drop(offline) == drop(live)
    assert finding(offline, "kernel.cmdline_applied")["status"] == "skip"
    assert finding(offline, "devices.driver", NVME)["status"] == "warn"


def test_vmid_narrows_to_that_vm_and_device_to_that_device(tmp_path):
    root = build(tmp_path, files={"/etc/pve/qemu-server/101.conf": _vm_conf({"hostpci0": "0000:07:00.0"})})
    code, report = doctor(root)
    assert code == 11 and {c["subject"] for c in report["checks"] if c["group"] == "vms"} == {"VM 100", "VM 101"}
    code, report = doctor(root, "100")
    assert code == 0 and {c["subject"] for c in report["checks"] if c["group"] == "vms"} == {"VM 100"}
    code, report = doctor(root, "07:00.0")
    assert {c["subject"] for c in report["checks"] if c["group"] == "devices"} >= {"0000:07:00.0"}
    assert finding(report, "devices.group", "0000:07:00.0")["status"] == "fail" and code == 11
    r = cli("doctor", "--root", str(root), "555")
    assert r.code == 4 and "VM 555" in r.err
    r = cli("doctor", "--root", str(root), "42:00.0")
    assert r.code == 4


def test_json_gives_every_check_its_id_status_evidence_and_fix(tmp_path):
    _, report = doctor(build(tmp_path, vm={"balloon": None}))
    assert report["kind"] == "doctor" and report["summary"].startswith("warn:")
    for c in report["checks"]:
        assert set(c) >= {"id", "status", "evidence", "fix"} and c["status"] in ("ok", "warn", "fail", "skip")
    assert finding(report, "vms.balloon", "VM 100")["fix"] == "qm set 100 --balloon 0"


@pytest.mark.parametrize(("section", "field"), [
    ({"iomem": [{"start": "zz", "end": "1", "name": "BOOTFB", "depth": 0}]}, "doctor.iomem"),
    ({"boot_modules": [{"module": "vfio_virqfd"}]}, "doctor.boot_modules"),
    ({"vfio_ids": [{"file": "/etc/modprobe.d/x.conf", "line": 1, "ids": "10de:1c82"}]}, "doctor.vfio_ids"),
    ({"pve": {"node": 7, "vms": {}}}, "doctor.pve"),
    ({"pve": {"vms": {"100": {"hostpci0": 1}}}}, "doctor.pve.vms.100"),
    ([], "doctor."),
])
def test_a_hand_edited_doctor_section_is_one_line_naming_the_field(tmp_path, section, field):
    raw = samples.load_raw(B550)
    raw["doctor"] = section
    snap = tmp_path / "bad.json"
    snap.write_text(json.dumps(raw))
    r = cli("doctor", "--snapshot", str(snap))
    assert r.code == 3 and f"'{field}" in r.err and "Traceback" not in r.err


LAB_AMD, LAB_INTEL = "lab-gpu-like-card-amd", "lab-gpu-like-card"


@pytest.mark.parametrize("sample", [LAB_AMD, LAB_INTEL])
def test_the_lab_guests_are_vms_whose_kernel_iommu_is_active(sample):
    """The committed lab captures (real 6.1 kernels under QEMU) predate doctor: their kernel log
    was filtered without the boot line and the DMAR-IR lines, and they hold no ACPI table names,
    modules or iomem. Doctor says the guest is a VM first, finds its IOMMU active from the real
    kernel's groups and the AMD guest's interrupt remapping from its real log line, and does not
    judge the Intel guest's from a log filtered without the DMAR-IR lines."""
    r = cli("doctor", "--sample", sample, "--json")
    report = json.loads(r.out)
    assert report["checks"][0]["id"] == "firmware.hypervisor" and report["checks"][0]["status"] == "warn"
    assert finding(report, "kernel.iommu")["status"] == "ok"
    irq = finding(report, "kernel.irq_remap")
    if sample == LAB_AMD:  # QEMU amd-iommu,intremap=on: the real kernel's own line
        assert irq["status"] == "ok" and irq["evidence"].endswith("AMD-Vi: Interrupt remapping enabled")
    else:  # intel-iommu,intremap=on, but the old filter dropped DMAR-IR lines: not judged
        assert irq["status"] == "skip" and irq["code"] == "log.partial"
    assert finding(report, "firmware.acpi_iommu")["status"] == "skip"


def test_a_slot_names_every_function_of_the_card(tmp_path):
    _, report = doctor(build(tmp_path), "04:00")
    assert {c["subject"] for c in report["checks"] if c["id"] == "devices.driver"} == {"0000:04:00.0", "0000:04:00.1"}
    assert finding(report, "devices.gpu_audio", "0000:04:00.0")["status"] == "ok"


def test_intel_before_6_8_with_the_iommu_already_on_needs_no_flag(tmp_path):
    """A distro kernel built with CONFIG_INTEL_IOMMU_DEFAULT_ON registers its units without
    intel_iommu=on: asking for the flag there would be a false alarm."""
    root = build(tmp_path, vendor="GenuineIntel", flags="fpu vmx", release="6.5.13-1-pve",
                 cmdline=CMDLINE.replace("6.8.12-4", "6.5.13-1"))
    _, report = doctor(root)
    assert finding(report, "kernel.intel_iommu_on")["status"] == "ok"


DOCTOR_LAB = Path(__file__).parent / "fixtures" / "doctor"


@pytest.mark.parametrize(("name", "table", "remap"), [
    ("gpu-like-card", "DMAR", "DMAR-IR: Enabled IRQ remapping in xapic mode"),
    ("gpu-like-card-amd", "IVRS", "AMD-Vi: Interrupt remapping enabled"),
])
def test_doctor_on_real_lab_guests_finds_what_the_guest_had(name, table, remap):
    """Captures of real 6.1 kernels in the QEMU lab (intremap=on under both IOMMUs): the ACPI table
    QEMU built, the kernel's own interrupt-remapping line, the bochs GPU as boot VGA, and no vfio
    module (the guest never loads one)."""
    r = cli("doctor", "--snapshot", str(DOCTOR_LAB / f"lab-{name}.json"), "01:00", "--json")
    report = json.loads(r.out)
    assert finding(report, "firmware.hypervisor")["status"] == "warn"
    assert finding(report, "firmware.acpi_iommu")["evidence"] == f"/sys/firmware/acpi/tables/{table}"
    irq = finding(report, "kernel.irq_remap")
    assert irq["status"] == "ok" and irq["evidence"] == f"kernel log (dmesg): {irq['evidence'].split(': ', 1)[1]}"
    assert irq["evidence"].endswith(remap)
    assert finding(report, "modules.loaded")["status"] == "warn"
    # The bochs VGA is the boot GPU and the only one: passing it leaves the guest without a console;
    # its BARs hold no firmware framebuffer (SeaBIOS, the bochs driver owns the card).
    assert finding(report, "devices.boot_gpu", "0000:01:00.0")["status"] == "fail"
    assert finding(report, "devices.framebuffer", "0000:01:00.0")["code"] == "fb.none"
    assert finding(report, "devices.gpu_audio", "0000:01:00.0")["status"] == "ok"
    assert r.code == 11


def test_an_anonymized_snapshot_keeps_no_node_name_and_still_resolves_mappings(tmp_path):
    root = build(tmp_path, vm={"hostpci0": "mapping=wd,pcie=1"}, files={
        "/etc/hostname": "nas-of-alice\n",
        "/etc/pve/mapping/pci.cfg": "wd\n\tmap node=nas-of-alice,path=0000:0b:00.0,id=15b7:5006,iommugroup=16\n"})
    snap = tmp_path / "anon.json"
    assert cli("snapshot", "--root", str(root), "--anonymize", "-o", str(snap)).code == 0
    assert "nas-of-alice" not in snap.read_text()
    r = cli("doctor", "--snapshot", str(snap), "--json")
    assert finding(json.loads(r.out), "vms.devices", "VM 100")["code"] == "hostpci.found"


def test_every_vfiokit_command_a_fix_suggests_exists_with_its_options(tmp_path):
    """A fix the user copies must run: each suggested `vfiokit ...` command, run with --help,
    is accepted by the real CLI (click refuses an unknown command or option with exit 2)."""
    import shlex

    fixes: set[tuple[str, str]] = set()
    for mode, (change, *_rest) in MODES.items():
        _, report = doctor(build(tmp_path / mode, **change))
        fixes |= {(c["fix"], c["id"]) for c in report["checks"] if (c["fix"] or "").startswith("vfiokit ")}
    assert {shlex.split(f)[1] for f, _ in fixes} >= {"check", "bind", "boot"}, fixes
    for fix in {f for f, _ in fixes}:
        r = cli(*shlex.split(fix)[1:], "--help")
        assert r.code == 0 and r.out.startswith("Usage: "), (fix, r.err)
    # the module lists are written by a persistent bind, not by a bind now
    assert {i for f, i in fixes if f == "vfiokit bind --persistent DEVICE"} == {"modules.at_boot",
                                                                                       "modules.initramfs"}
