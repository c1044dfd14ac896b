"""`vfiokit snapshot --anonymize`: nothing personal of a capture survives, and the analyses give the
same verdicts and groups on the anonymized file as on the original."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import pytest

from tests.conftest import cli
from vfiokit.analyses.anonymize import anonymize_capture, anonymize_topology
from vfiokit.sources import listing, samples

LAB = sorted(p for p in (resources.files("vfiokit") / "samples" / "lab").iterdir() if p.name.endswith(".json"))


def _dsn_serials(raw: dict) -> list[str]:
    """Device Serial Numbers in captured config space (extended capability id 3), walked here
    independently: header at 0x100, next offset in bits 31:20."""
    found = []
    for entry in raw["devices"].values():
        data = bytes.fromhex(entry.get("config") or "")
        pos = 0x100
        while pos >= 0x100 and pos + 12 <= len(data):
            header = int.from_bytes(data[pos:pos + 4], "little")
            if header & 0xFFFF == 3:
                found.append(data[pos + 4:pos + 12].hex())
            if header >> 20 in (0, pos):
                break
            pos = header >> 20
    return [s for s in found if s.strip("0")]


def _originals(raw: dict) -> list[str]:
    usage = raw.get("host_usage") or {}
    values = [raw["host"]["hostname"]]
    values += [s["use"] for s in usage.get("storage") or () if s["use"] not in ("/", "/boot", "/boot/efi")]
    values += _dsn_serials(raw)
    return [v for v in values if v]


def _verdict(out: str) -> dict:
    data = json.loads(out)
    return {"verdict": data["verdict"], "groups": data["groups"], "targets": data["targets"],
            "members": [(m["address"], m["role"], m["leaves_host"], m["critical"],
                         [(n["kind"], n["critical"], n["loss"]) for n in m["needs"]]) for m in data["members"]]}


@pytest.mark.parametrize("path", LAB, ids=lambda p: p.name[:-5])
def test_anonymized_lab_capture_keeps_verdicts_and_loses_personal_facts(path, tmp_path):
    out = tmp_path / "anon.json"
    r = cli("snapshot", "--from", str(path), "--anonymize", "-o", str(out))
    assert r.code == 0, r.err
    assert "anonymized: 1 hostname" in r.err
    raw = json.loads(Path(path).read_text())
    text = out.read_text()
    originals = _originals(raw)
    assert originals, "the capture should hold at least its hostname"
    for value in originals:
        assert value not in text, f"{value!r} survived --anonymize"
    name = f"lab-{path.name[:-5]}"
    # Every device a user could pass: same verdict, groups, members and what each costs.
    for addr, entry in raw["devices"].items():
        if "pci_bus" in entry.get("files", ()) or not any(addr in m for m in (raw["iommu_groups"] or {}).values()):
            continue  # bridges cannot be passed; devices outside any group cannot be judged
        a = cli("check", addr, "--sample", name, "--json")
        b = cli("check", addr, "--snapshot", str(out), "--json")
        assert a.code == b.code, addr
        assert _verdict(a.out) == _verdict(b.out), addr
    a, b = cli("simulate", "--sample", name, "--json"), cli("simulate", "--snapshot", str(out), "--json")
    assert a.code == b.code
    assert _without_source(a.out) == _without_source(b.out)


def _without_source(out: str) -> dict:
    """A simulate document with its source's name taken out, also where a note names it."""
    doc = json.loads(out)
    source = doc.pop("source")
    doc["notes"] = [n.replace(source, "SOURCE") for n in doc["notes"]]
    return doc


def _personal_capture() -> dict:
    """A lab capture given what a real host has: names, addresses, a Proxmox node, ZFS, VMs."""
    raw = copy.deepcopy(samples.load_raw("lab-hostuse"))
    raw["host"]["hostname"] = "pve-alice"
    raw["host"]["cmdline"] = ("BOOT_IMAGE=/boot/vmlinuz root=UUID=9ff8c203-950b-4f46-8c41-6e994151ecd3 ro "
                              "ip=192.168.1.20::192.168.1.1:255.255.255.0:pve-alice:eth0:none intel_iommu=on")
    raw["host"]["dmesg"] = ["[    2.1] e1000e 0000:04:00.0 eth0: aa:bb:cc:dd:ee:ff",
                            "[    2.2] IPv6 fe80::5054:ff:fe12:3456 on vmbr0"]
    raw["captured"]["by"] = "alice"
    raw["read_notes"] = ["/home/alice/tools/x: permission denied"]
    usage = raw["host_usage"]
    usage["storage"].append({"use": "/srv/alice-photos", "role": "mount", "source": "/dev/mapper/vg0-photos",
                             "fstype": "ext4", "chain": ["dm-3", "nvme0n1", "nvme0", "0000:03:00.0"],
                             "pci": "0000:03:00.0"})
    usage["input"] = [{"what": "keyboard", "name": "Alice's Keychron K2", "chain": ["input3", "0000:06:00.0"],
                       "pci": "0000:06:00.0"}]
    usage["proxmox"] = {"node": "pve-alice",
                        "vms": [{"vmid": "100", "name": "alice-gaming", "key": "hostpci0",
                                 "value": "mapping=alice-gpu,pcie=1", "pending": False}],
                        "mappings": [{"id": "alice-gpu", "node": "pve-alice", "path": "0000:06:00.0"}]}
    usage["zfs"] = {"tank": "NAME STATE\ntank ONLINE\n"
                            "  /dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K1234567 ONLINE"}
    return raw


def test_every_kind_of_personal_fact_is_replaced(tmp_path):
    raw = _personal_capture()
    anon, said = anonymize_capture(raw)
    text = json.dumps(anon)
    for value in ("pve-alice", "alice", "9ff8c203-950b-4f46-8c41-6e994151ecd3", "192.168.1.20", "192.168.1.1",
                  "aa:bb:cc:dd:ee:ff", "fe80::5054:ff:fe12:3456", "/srv/alice-photos", "vg0-photos",
                  "Keychron", "alice-gpu", "alice-gaming", "tank", "WD-WCC7K1234567", "/mnt/data"):
        assert value not in text, value
    # ip= holds the address, the gateway and the netmask: three.
    assert "1 hostname" in said and "3 IP addresses" in said and "1 MAC address" in said
    # What the analyses need stays: the kernel, the PCI functions under / and the default route,
    # the VM number and its (renamed) mapping, which still names the renamed mapping id.
    assert anon["host"]["kernel_release"] == raw["host"]["kernel_release"]
    assert anon["host_usage"]["proxmox"]["vms"][0]["value"] == "mapping=mapping-1,pcie=1"
    assert anon["host_usage"]["proxmox"]["mappings"][0]["id"] == "mapping-1"
    assert [s["pci"] for s in anon["host_usage"]["storage"]] == [s["pci"] for s in raw["host_usage"]["storage"]]
    # The same device verdicts, the VM's hold on 06:00.0 included.
    src, dst = tmp_path / "a.json", tmp_path / "b.json"
    src.write_text(json.dumps(raw))
    dst.write_text(json.dumps(anon))
    for addr in ("03:00.0", "06:00.0"):
        a = cli("check", addr, "--snapshot", str(src), "--json")
        b = cli("check", addr, "--snapshot", str(dst), "--json")
        assert a.code == b.code and _verdict(a.out) == _verdict(b.out)
    assert "VM 100" in cli("check", "06:00.0", "--snapshot", str(dst)).out


def test_anonymize_topology_for_renderers():
    """The markdown renderer anonymizes any source's topology with the same function."""
    top = listing.parse("BOOT_IMAGE=/vmlinuz root=UUID=9ff8c203-950b-4f46-8c41-6e994151ecd3 ro\n"
                        "IOMMU Group 1 01:00.0 VGA compatible controller [0300]: X [10de:1b80]\n").topology
    anon, said = anonymize_topology(top)
    assert "9ff8c203" not in (anon.host.cmdline or "") and "1 UUID" in said
    assert anon.groups == top.groups and anon.devices == top.devices


def test_anonymized_board_reads_back_as_a_board_quality_source(tmp_path):
    """A board submitted anonymized is a full source: groups, classes, ids, topology all kept."""
    out = tmp_path / "anon.json"
    capture = next(p for p in LAB if json.loads(p.read_text())["iommu_groups"])  # a host with groups
    assert cli("snapshot", "--from", str(capture), "--anonymize", "-o", str(out)).code == 0
    a = json.loads(cli("groups", "--sample", f"lab-{capture.name[:-5]}", "--json").out)
    b = json.loads(cli("groups", "--snapshot", str(out), "--json").out)
    assert a["groups"] == b["groups"]


def test_markdown_for_a_post_can_be_anonymized_and_reads_back(tmp_path):
    """`groups --format markdown --anonymize` (issue 20): the table for a forum post keeps no
    hostname, address, UUID or mapping name of the host, and still reads back as the same groups."""
    snap = tmp_path / "host.json"
    snap.write_text(json.dumps(_personal_capture()))
    plain = cli("groups", "--snapshot", str(snap), "--format", "markdown")
    r = cli("groups", "--snapshot", str(snap), "--format", "markdown", "--anonymize")
    assert r.code == 0 == plain.code, r.err
    assert "192.168.1.20" in plain.out  # the kernel command line of the post names the address...
    for value in ("pve-alice", "192.168.1.20", "9ff8c203-950b-4f46-8c41-6e994151ecd3", "alice-gpu"):
        assert value not in r.out, value  # ...which the anonymized table does not
    assert "anonymized: 1 hostname" in r.err
    pasted = tmp_path / "post.md"
    pasted.write_text(r.out)
    back = cli("groups", "--listing", str(pasted), "--json")
    original = cli("groups", "--snapshot", str(snap), "--json")
    assert json.loads(back.out)["groups"] and [g["number"] for g in json.loads(back.out)["groups"]] == \
        [g["number"] for g in json.loads(original.out)["groups"]]


def test_anonymize_is_for_the_markdown_table_only():
    r = cli("groups", "--sample", "asus-tuf-b550-plus", "--anonymize")
    assert r.code == 2 and "--anonymize goes with --format markdown" in r.err
