"""The listing reader on each way people produce and paste listings, with the noise around them;
real lspci output of a materialized sample as the oracle; bad listings; `--listing` on the CLI."""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from tests import oracle
from tests.conftest import cli
from tests.oracle import article_script, lspci
from vfiokit.errors import BadInput
from vfiokit.model import PciAddress
from vfiokit.sources import listing, samples
from vfiokit.sources.tree import materialize

A = PciAddress.parse


def read(text: str):
    return listing.parse_with_pciids(textwrap.dedent(text), "paste")


def groups(text: str) -> dict[int, list[str]]:
    return {g.number: [a.short for a in g.members] for g in read(text).topology.groups}


@pytest.fixture(scope="module")
def b550_tree(tmp_path_factory):
    return materialize(samples.load_raw("asus-tuf-b550-plus"), tmp_path_factory.mktemp("b550") / "root")


@pytest.mark.parametrize("flags", [[], ["-nn"], ["-n"], ["-D", "-nn"], ["-mm", "-nn"]],
                         ids=["plain", "nn", "n", "domain", "mm"])
def test_the_articles_script_run_with_real_lspci_reads_back_to_the_sample(b550_tree, flags):
    """The script of the article, run by bash with the real lspci on the sample's tree."""
    sample = samples.load("asus-tuf-b550-plus")
    text = article_script(b550_tree) if not flags else article_script_with(b550_tree, flags)
    top = listing.parse_with_pciids(text, "article script").topology
    assert {g.number: g.members for g in top.groups} == {g.number: g.members for g in sample.groups}
    grouped = [d for d in sample.devices if d.iommu_group is not None]  # a listing shows only these
    if "-n" in flags or "-nn" in flags:
        assert {d.address: d.ids for d in top.devices} == {d.address: d.ids for d in grouped}
        assert {d.address: d.class_id for d in top.devices} == {d.address: d.class_id for d in grouped}
        assert {d.address: d.revision or None for d in top.devices} == {
            d.address: d.revision or None for d in grouped}
    # The human view of the listing shows each device as `lspci -nn` names it, when it had the ids.
    if flags in (["-nn"], ["-D", "-nn"]):
        out = cli("groups", "--listing", "-", stdin=text).out
        shown = {d.address.short for d in grouped}
        lines = [x for x in lspci(b550_tree, "-nn").splitlines() if x.split(" ", 1)[0] in shown]
        assert len(lines) == len(grouped)
        for line in lines:
            assert line in out


@pytest.mark.parametrize("flags", [["-vmm", "-nn"], ["-v"], ["-nnv"]])
def test_lspci_verbose_outputs_carry_the_groups_and_read_back_to_the_sample(b550_tree, flags):
    """`lspci -v` prints "IOMMU group N" in its Flags line, `lspci -vmm` an IOMMUGroup field."""
    sample = samples.load("asus-tuf-b550-plus")
    top = listing.parse_with_pciids(lspci(b550_tree, *flags), "lspci").topology
    assert {g.number: g.members for g in top.groups} == {g.number: g.members for g in sample.groups}
    grouped = [d for d in sample.devices if d.iommu_group is not None]
    if "-vmm" in flags:
        assert {d.address: (d.ids, d.class_code) for d in top.devices if d.iommu_group is not None} == {
            d.address: (d.ids, d.class_code) for d in grouped}
    else:
        assert {d.address: d.driver for d in top.devices if d.iommu_group is not None} == {
            d.address: d.driver for d in grouped}


def article_script_with(tree, flags):
    """The article's script with lspci options added, as people run it (`lspci -s ... -nn`)."""
    script = tree.parent / "article-flags.sh"
    script.write_text(oracle.ARTICLE_SCRIPT.replace('"$@"', " ".join(flags) + ' "$@"'))
    oracle.need_lspci()
    return subprocess.run(["bash", str(script), *oracle.lspci_args(tree)],
                          env={"SYS": f"{tree}/sys", "PATH": "/usr/bin:/bin", "LC_ALL": "C"},
                          capture_output=True, text=True, check=True).stdout


def test_headers_in_every_spelling():
    text = """\
        IOMMU Group 1
        \t00:01.0 Host bridge: Intel Corporation Device 1234
        IOMMU group 2:
          00:02.0 VGA compatible controller: Intel Corporation Device 3e92
        IOMMU GROUP 3:
            00:03.0 Audio device: Intel Corporation Device a170
        ### Group 4 ###
        00:04.0 SMBus: Intel Corporation Device a123
        **IOMMU Group 5:**
        - 00:05.0 USB controller: Intel Corporation Device a12f
        Group 6:
        00:06.0 PCI bridge: Intel Corporation Device a110
        IOMMU Group   7:
        00:07.0 PCI bridge: Intel Corporation Device a114
        """
    assert groups(text) == {n: [f"00:0{n}.0"] for n in range(1, 8)}


def test_flat_lines_in_random_order_with_and_without_domain():
    text = """\
        IOMMU Group 10 0000:00:1f.3 Audio device [0403]: Intel Corporation Device [8086:a170] (rev 31)
        IOMMU Group 2 00:01.0 PCI bridge [0604]: Intel Corporation Device [8086:1901] (rev 07)
        IOMMU Group 10 00:1f.0 ISA bridge [0601]: Intel Corporation Z170 Chipset LPC/eSPI Controller [8086:a145]
        IOMMU Group 2 01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GM206 [GeForce GTX 960] [10de:1401] (rev a1)
        """  # noqa: E501
    assert groups(text) == {2: ["00:01.0", "01:00.0"], 10: ["00:1f.0", "00:1f.3"]}


def test_lspci_variants_numeric_machine_readable_and_prog_if():
    top = read("""\
        IOMMU Group 1:
        \t01:00.0 0300: 10de:1401 (rev a1)
        \t01:00.1 "Audio device [0403]" "NVIDIA Corporation [10de]" "GM206 High Definition Audio [0fba]" -ra1
        \t00:14.0 USB controller [0c03]: Intel Corporation Device [8086:a12f] (rev 31) (prog-if 30 [XHCI])
        """).topology
    gpu, audio, usb = (top.by_address[A(x)] for x in ("01:00.0", "01:00.1", "00:14.0"))
    assert (gpu.ids, gpu.class_id, gpu.revision, gpu.class_name) == ("10de:1401", 0x0300, 0xA1, None)
    assert (audio.ids, audio.class_id, audio.vendor_name, audio.device_name, audio.revision) == (
        "10de:0fba", 0x0403, "NVIDIA Corporation", "GM206 High Definition Audio", 0xA1)
    assert usb.class_code == 0x0C0330


def test_unraid_system_devices_page_copied():
    top = read("""\
        IOMMU group 12:\t[10de:1b80] 01:00.0 VGA compatible controller: NVIDIA Corporation GP104 [GeForce GTX 1080] (rev a1)
        \t[10de:10f0] 01:00.1 Audio device: NVIDIA Corporation GP104 High Definition Audio Controller (rev a1)
        """).topology  # noqa: E501
    gpu, audio = top.by_address[A("01:00.0")], top.by_address[A("01:00.1")]
    assert (gpu.ids, gpu.class_name, gpu.vendor_name, gpu.device_name, gpu.revision) == (
        "10de:1b80", "VGA compatible controller", "NVIDIA Corporation", "GP104 [GeForce GTX 1080]", 0xA1)
    assert audio.iommu_group == 12 and audio.ids == "10de:10f0"


def test_find_output_in_any_order_and_tree_and_ls_l():
    find = """\
        $ find /sys/kernel/iommu_groups/ -type l
        /sys/kernel/iommu_groups/15/devices/0000:02:00.1
        /sys/kernel/iommu_groups/7/devices/0000:00:08.1
        /sys/kernel/iommu_groups/15/devices/0000:02:00.0
        """
    assert groups(find) == {7: ["00:08.1"], 15: ["02:00.0", "02:00.1"]}
    tree = """\
        /sys/kernel/iommu_groups/
        ├── 0
        │   ├── devices
        │   │   └── 0000:00:00.0 -> ../../../../devices/pci0000:00/0000:00:00.0
        │   ├── reserved_regions
        │   └── type
        └── 1
            ├── devices
            │   ├── 0000:00:01.0 -> ../../../../devices/pci0000:00/0000:00:01.0
            │   └── 0000:01:00.0 -> ../../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0
            └── type

        2 directories, 5 files
        """
    assert groups(tree) == {0: ["00:00.0"], 1: ["00:01.0", "01:00.0"]}
    ls = """\
        /sys/kernel/iommu_groups/3/devices:
        total 0
        lrwxrwxrwx 1 root root 0 Mar  3 10:00 0000:00:14.0 -> ../../../../devices/pci0000:00/0000:00:14.0
        lrwxrwxrwx 1 root root 0 Mar  3 10:00 0000:00:14.2 -> ../../../../devices/pci0000:00/0000:00:14.2
        """
    assert groups(ls) == {3: ["00:14.0", "00:14.2"]}
    deep = """\
        iommu
        └── groups
            ├── 3
            │   │   │   └── 0000:00:14.0
            │   │   │   └── 0000:00:14.2
        """
    assert groups(deep) == {3: ["00:14.0", "00:14.2"]}


def test_tree_drawing_under_a_header():
    text = """\
        IOMMU Group 15
        ├── 04:00.0 VGA compatible controller [0300]: NVIDIA Corporation GM206GL [Quadro M2000] [10de:1430]
        └── 04:00.1 Audio device [0403]: NVIDIA Corporation GM206 High Definition Audio Controller [10de:0fba]
        """
    top = read(text).topology
    assert groups(text) == {15: ["04:00.0", "04:00.1"]}
    assert top.by_address[A("04:00.0")].device_name == "GM206GL [Quadro M2000]"


PVESH = """\
root@pve:~# pvesh get /nodes/pve/hardware/pci --pci-class-blacklist ""
┌──────────┬────────┬──────────────┬────────────┬────────┬───────────────────────────────────────────
│ class    │ device │ id           │ iommugroup │ vendor │ device_name
╞══════════╪════════╪══════════════╪════════════╪════════╪═══════════════════════════════════════════
│ 0x010601 │ 0xa282 │ 0000:00:17.0 │          5 │ 0x8086 │ 200 Series PCH SATA controller [AHCI mode]
├──────────┼────────┼──────────────┼────────────┼────────┼───────────────────────────────────────────
│ 0x010802 │ 0xa808 │ 0000:02:00.0 │         12 │ 0x144d │ NVMe SSD Controller SM981/PM981/PM983
├──────────┼────────┼──────────────┼────────────┼────────┼───────────────────────────────────────────
│ 0x030000 │ 0x3e92 │ 0000:00:02.0 │          0 │ 0x8086 │ CoffeeLake-S GT2 [UHD Graphics 630]
└──────────┴────────┴──────────────┴────────────┴────────┴───────────────────────────────────────────
"""


def test_pvesh_table_with_full_class_codes_and_the_hidden_bridges_said():
    r = listing.parse_with_pciids(PVESH, "pvesh")
    top = r.topology
    assert groups(PVESH) == {0: ["00:02.0"], 5: ["00:17.0"], 12: ["02:00.0"]}
    sata = top.by_address[A("00:17.0")]
    assert (sata.class_code, sata.ids, sata.device_name) == (0x010601, "8086:a282",
                                                             "200 Series PCH SATA controller [AHCI mode]")
    assert any("pvesh hides classes 05, 06 and 0b" in n for n in top.notes)
    assert not r.skipped


def test_noise_prompts_commands_uname_cmdline_markdown_ansi_and_quotes():
    text = (
        "Here is my output, hope it helps!\n"
        "```console\n"
        "user@box:~$ uname -r\n"
        "6.8.12-4-pve\n"
        "user@box:~$ cat /proc/cmdline\n"
        "initrd=\\EFI\\proxmox\\6.8.12-4-pve\\initrd.img root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on\n"
        "user@box:~$ ./iommu.sh\n"
        "\x1b[1;32mIOMMU Group 1:\x1b[0m\n"
        "\t\x1b[0;33m01:00.0\x1b[0m VGA compatible controller [0300]: NVIDIA Corporation GP104 [10de:1b80]\n"
        "> \t01:00.1 Audio device [0403]: NVIDIA Corporation GP104 High Definition Audio [10de:10f0]\r\n"
        "```\n"
        "Linux box 6.8.12-4-pve #1 SMP PREEMPT_DYNAMIC PMX 6.8.12-4 x86_64 GNU/Linux\n"
    )
    r = listing.parse_with_pciids(text, "paste")
    assert groups(text) == {1: ["01:00.0", "01:00.1"]}
    assert r.topology.host.kernel_release == "6.8.12-4-pve"
    assert r.topology.host.cmdline.endswith("boot=zfs amd_iommu=on")
    assert not r.skipped


@pytest.mark.parametrize("prose", [
    "uname -a: Linux pve 6.5.11-7-pve #1 SMP PREEMPT_DYNAMIC PMX 6.5.11-7 (2023-12-05T09:44Z) x86_64 GNU/Linux",
    "Uname -a = Linux pve 6.5.11-7-pve #1 SMP PREEMPT_DYNAMIC PMX 6.5.11-7 x86_64 GNU/Linux",
])
def test_uname_said_in_prose_gives_the_kernel_release(prose):
    text = prose + "\nIOMMU Group 1 01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [10de:1b80]\n"
    r = listing.parse_with_pciids(text, "paste")
    assert r.topology.host.kernel_release == "6.5.11-7-pve"
    assert groups(text) == {1: ["01:00.0"]}


def test_ls_iommu_k_lines_attach_to_the_device_above():
    top = read("""\
        IOMMU Group  21: 0000:0a:00.0 VGA compatible controller [0300] NVIDIA Corporation GA102 [10de:2206] (rev a1)
        \tSubsystem: Micro-Star International Co., Ltd. [MSI] GA102 [1462:3892]
        \tKernel driver in use: vfio-pci
        IOMMU Group  21: 0000:0a:00.1 Audio device [0403] NVIDIA Corporation GA102 High Definition Audio Controller [10de:1aef] (rev a1)
        IOMMU Group   2: 0000:00:01.1 PCI bridge [0604] Advanced Micro Devices, Inc. [AMD] unknown [1022:1483]
        \tKernel driver in use: pcieport
        """).topology  # noqa: E501
    gpu, audio = top.by_address[A("0a:00.0")], top.by_address[A("0a:00.1")]
    assert (gpu.driver, gpu.subsystem_vendor_id, gpu.subsystem_device_id) == ("vfio-pci", 0x1462, 0x3892)
    assert audio.driver == ""  # a -k listing prints the line only when a driver is bound
    assert not any("drivers are unknown" in n for n in top.notes)


def test_out_of_range_address_is_reported_not_silently_dropped():
    # A typo (device 0x20, function 8) in a flat line or under a header: the line and its group
    # must be accounted for, not read as prose.
    r = read("""\
        IOMMU Group 1 01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [10de:1b80]
        IOMMU Group 3 00:20.0 Audio device [0403]: NVIDIA Corporation GP104 Audio [10de:10f0]
        IOMMU Group 4:
        \t00:00.8 USB controller [0c03]: AMD Device [1022:43ee]
        """)
    assert [s.line for s in r.skipped] == [2, 4]
    assert all("not a PCI address" in s.reason for s in r.skipped)
    assert "00:20.0" in r.skipped[0].reason and "00:00.8" in r.skipped[1].reason
    assert any(n.startswith("line 2: '00:20.0' is not a PCI address") for n in r.topology.notes)
    assert any("group 4 has no readable device" in n for n in r.topology.notes)

def test_unreadable_device_line_is_reported_with_its_number_and_kept_out():
    r = read("""\
        IOMMU Group 1:
        \t01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [10de:1b80]
        \t01:00.1
        \t(01:00.2 was here)
        """)
    assert [(s.line, s.reason) for s in r.skipped] == [(4, "not a device line the reader knows")]
    assert any(n.startswith("line 4: not a device line") for n in r.topology.notes)
    assert groups("IOMMU Group 1:\n\t01:00.0 VGA: X\n\t01:00.1\n") == {1: ["01:00.0", "01:00.1"]}


@pytest.mark.parametrize("text, says", [
    ("IOMMU Group 1\n\t01:00.0 VGA compatible controller: X\nIOMMU Group 2\n\t01:00.0 VGA: X\n",
     "paste: line 4: 0000:01:00.0 is listed twice (first at line 2)"),
    ("01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [10de:1b80]\n",
     "paste: no IOMMU group found (1 device lines, none under a group)"),
    ("", "paste: no IOMMU group found;"),
    ("hello\nworld\n", "paste: no IOMMU group found;"),
])
def test_bad_listings_are_one_clear_error(text, says):
    with pytest.raises(BadInput) as e:
        listing.parse_with_pciids(text, "paste")
    assert str(e.value).startswith(says)


def test_cli_listing_from_file_and_stdin_and_errors(tmp_path):
    f = tmp_path / "post.txt"
    f.write_text("IOMMU group 3:\n  00:14.0 USB controller: Intel Corporation Device a12f\n")
    r = cli("groups", "--listing", str(f), "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    dev = data["groups"][0]["devices"][0]
    assert data["source"] == f"listing {f}"
    # No `[cccc]`: the class comes from its name ("USB controller", pci.ids' class 0c03).
    assert (dev["vendor_id"], dev["device_id"], dev["class"], dev["driver"], dev["revision"]) == (
        None, None, "0c03", None, None)
    assert (dev["class_name"], dev["vendor_name"], dev["device_name"]) == (
        "USB controller", "Intel Corporation", "Device a12f")
    assert any("drivers are unknown" in n for n in data["notes"])
    assert cli("groups", "--listing", "-", stdin=f.read_text()).code == 0
    bad = cli("groups", "--listing", str(tmp_path / "missing.txt"))
    assert bad.code == 3 and "missing.txt: cannot read listing" in bad.err
    both = cli("groups", "--listing", str(f), "--sample", "asus-tuf-b550-plus")
    assert both.code == 2 and "--sample and --listing" in both.err
    empty = cli("groups", "--listing", "-", stdin="nothing here\n")
    assert empty.code == 3 and "vfiokit: error: listing <stdin>: no IOMMU group found" in empty.err
    twice = tmp_path / "twice.txt"
    twice.write_text("IOMMU Group 1\n\t01:00.0 VGA: X\nIOMMU Group 2\n\t01:00.0 VGA: X\n")
    doc = json.loads(cli("groups", "--listing", str(twice), "--json").out)
    # The --json error names the file, the line and the device it failed on, as fields.
    assert (doc["kind"], doc["file"], doc["line"], doc["device"]) == ("error", str(twice), 4, "0000:01:00.0")
    doc = json.loads(cli("groups", "--listing", str(tmp_path / "missing.txt"), "--json").out)
    assert (doc["code"], doc["file"]) == (3, str(tmp_path / "missing.txt"))


def test_find_listing_json_has_nulls_not_placeholders():
    r = cli("groups", "--listing", "-", "--json", stdin="/sys/kernel/iommu_groups/4/devices/0000:00:1f.0\n")
    dev = json.loads(r.out)["groups"][0]["devices"][0]
    assert {k: dev[k] for k in ("class", "class_name", "name", "vendor_name", "device_name", "driver")} == \
        dict.fromkeys(("class", "class_name", "name", "vendor_name", "device_name", "driver"))
    human = cli("groups", "--listing", "-", stdin="/sys/kernel/iommu_groups/4/devices/0000:00:1f.0\n")
    assert "00:1f.0 Unknown class: Unknown device" in human.out
    assert "class codes unknown for 1 of 1 devices" in human.err


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_listing_saved_on_windows_reads_every_line(tmp_path, encoding):
    # Notepad saves UTF-8 with a byte order mark; Windows PowerShell's `>` writes UTF-16 with one.
    text = ("IOMMU Group 1 01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [10de:1b80]\r\n"
            "IOMMU Group 2 02:00.0 Ethernet controller [0200]: Intel Corporation I211 [8086:1539]\r\n")
    f = tmp_path / "paste.txt"
    f.write_bytes(text.encode(encoding))
    r = cli("groups", "--listing", str(f), "--json")
    assert r.code == 0, r.err
    got = {g["number"]: [d["address"] for d in g["devices"]] for g in json.loads(r.out)["groups"]}
    assert got == {1: ["0000:01:00.0"], 2: ["0000:02:00.0"]}
    assert "line 1" not in r.err


def test_pvesh_group_minus_one_is_no_group_not_an_unknown_one():
    # The API reports iommugroup -1 for a device the kernel put in no group: that is known.
    text = PVESH.replace("│ 0x030000 │ 0x3e92 │ 0000:00:02.0 │          0 │",
                         "│ 0x030000 │ 0x3e92 │ 0000:00:02.0 │         -1 │")
    top = read(text).topology
    igpu = top.by_address[A("00:02.0")]
    assert igpu.iommu_group is None and igpu.address not in top.group_unknown
    assert top.group_unknown == frozenset()
    assert not any("group unknown" in n for n in top.notes)
