"""The VM config editor against the documented hostpci grammar and the config file format.

The sample config is shaped like the ones qemu-server writes (description as `#` lines, main
section, `[PENDING]`, `[special:cloudinit]`, snapshots with `parent`/`snaptime`).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vfiokit.errors import BadInput
from vfiokit.formats import pve_config as pc
from vfiokit.formats import pve_hostpci as hostpci

CONFIG = """\
#Media server%3A Jellyfin
#GPU for transcoding
agent: 1
boot: order=scsi0;net0
cores: 4
hostpci0: 0000:0a:00,pcie=1
machine: q35
memory: 8192
name: media
net0: virtio=BC:24:11:5E:0F:01,bridge=vmbr0
parent: before-upgrade
scsi0: local-lvm:vm-101-disk-0,size=32G
scsihw: virtio-scsi-single

[PENDING]
memory: 16384

[special:cloudinit]
ipconfig0: ip=dhcp

[before-upgrade]
#state before the upgrade
boot: order=scsi0;net0
cores: 2
hostpci3: 0000:0b:00.0
machine: q35
memory: 4096
name: media
scsi0: local-lvm:vm-101-disk-0,size=32G
snaptime: 1732700000
"""


def sections_except(text: str, keep: str) -> dict[str, str]:
    """Every section's text except `keep`, to show an edit left them byte-identical."""
    parts = re.split(r"(?m)^(?=\[)", text)
    out = {}
    for p in parts:
        name = p.split("]")[0][1:] if p.startswith("[") else ""
        if name != keep:
            out[name] = p
    return out


def test_parse_sections_and_pending():
    conf = pc.parse_config(CONFIG)
    assert [s.name for s in conf.sections] == ["", "PENDING", "special:cloudinit", "before-upgrade"]
    assert conf.value("memory") == "8192"
    assert conf.effective("memory") == "16384"
    assert conf.is_q35() and conf.bios() == "seabios"
    assert set(conf.hostpci()) == {"hostpci0"}  # the snapshot's hostpci3 is not the VM's


def test_add_to_stopped_vm_keeps_every_other_byte():
    conf = pc.parse_config(CONFIG)
    key = pc.first_free_index(conf)
    assert key == "hostpci1"
    new = pc.set_option(conf, key, "0000:07:00.0,pcie=1")
    diff = pc.config_diff(CONFIG, new, "101.conf")
    assert [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")] == [
        "+hostpci1: 0000:07:00.0,pcie=1"]
    assert sections_except(new, "") == sections_except(CONFIG, "")
    # and back: deleting the line restores the original exactly
    assert pc.delete_option(pc.parse_config(new), key) == CONFIG


def test_running_vm_change_goes_to_pending():
    conf = pc.parse_config(CONFIG)
    new = pc.set_option(conf, "hostpci1", "0000:07:00.0", running=True)
    again = pc.parse_config(new)
    assert again.value("hostpci1") is None
    assert again.pending["hostpci1"] == "0000:07:00.0"
    assert sections_except(new, "PENDING") == sections_except(CONFIG, "PENDING")


def test_running_vm_without_pending_section_gets_one_after_main():
    text = "cores: 2\nmemory: 2048\n\n[snap1]\ncores: 1\nsnaptime: 1\n"
    new = pc.set_option(pc.parse_config(text), "hostpci0", "01:00", running=True)
    assert new == "cores: 2\nmemory: 2048\n\n[PENDING]\nhostpci0: 01:00\n\n[snap1]\ncores: 1\nsnaptime: 1\n"


def test_running_vm_delete_is_pending_delete():
    conf = pc.parse_config(CONFIG)
    new = pc.delete_option(conf, "hostpci0", running=True)
    again = pc.parse_config(new)
    assert again.value("hostpci0") == "0000:0a:00,pcie=1"
    assert again.pending_deletes == {"hostpci0"}
    assert again.effective("hostpci0") is None
    # the deleted index is still taken until the next start
    assert pc.first_free_index(again) == "hostpci1"
    # setting it again cancels the pending delete
    back = pc.parse_config(pc.set_option(again, "hostpci0", "0000:0a:00", running=True))
    assert back.pending_deletes == set() and back.pending["hostpci0"] == "0000:0a:00"


def test_config_without_final_newline_and_crlf():
    new = pc.set_option(pc.parse_config("cores: 2"), "hostpci0", "01:00.0")
    assert new == "cores: 2\nhostpci0: 01:00.0\n"
    crlf = "cores: 2\r\nmemory: 512\r\n"
    assert pc.set_option(pc.parse_config(crlf), "hostpci0", "01:00.0") == (
        "cores: 2\r\nhostpci0: 01:00.0\r\nmemory: 512\r\n")


def test_all_sixteen_used():
    text = "".join(f"hostpci{i}: 0000:{i + 1:02x}:00.0\n" for i in range(16))
    with pytest.raises(BadInput, match="all 16 hostpci slots"):
        pc.first_free_index(pc.parse_config(text))


def test_bad_config_line_names_the_line():
    with pytest.raises(BadInput, match=r"101.conf:2: cannot read 'this is not a key'"):
        pc.parse_config("cores: 2\nthis is not a key\n", "101.conf")


@pytest.mark.parametrize("value, message", [
    ("01:00.0,mapping=gpu", "Cannot set both 'host' and 'mapping'"),
    ("pcie=1", "Either 'host' or 'mapping' must be set"),
    ("01:00.0,pcie=maybe", "type check ('boolean') failed"),
    ("01:00.0,colour=red", "invalid key in comma-separated list property: 'colour'"),
    ("01:00.0,pcie=1,pcie=0", "duplicate key"),
    ("01:00.0,vendor-id=10de", "0x followed by 4 hex digits"),
    ("01:00.0,romfile=a;b", "romfile: value does not match the regex pattern"),
    ("01:00.0, pcie=1", "invalid key in comma-separated list property: ' pcie'"),
    ("01:00.0,pcie =1", "invalid key in comma-separated list property: 'pcie '"),
    (" 01:00.0,pcie=1", "host: value does not match the regex pattern"),
    ("01:00.0,pcie=", "missing key in comma-separated list property"),
    ("01:00.0,=1", "missing key in comma-separated list property"),
    ("01:00.0,driver=nouveau", "enumeration 'vfio, keep'"),
    ("01:0.0", "value does not match the regex pattern"),
    ("01:00.0,mapping=9gpu", "invalid configuration ID"),
])
def test_bad_hostpci_values(value, message):
    with pytest.raises(BadInput, match=re.escape(message)):
        hostpci.parse_hostpci(value)


def test_documented_examples_parse():
    # the examples of pve-docs qm-pci-passthrough.adoc
    assert hostpci.parse_hostpci("00:02.0").host == ("00:02.0",)
    hp = hostpci.parse_hostpci("02:00,pcie=on,x-vga=on")
    assert hp.flag("pcie") and hp.flag("x-vga") and hp.render() == "02:00,pcie=1,x-vga=1"
    hp = hostpci.parse_hostpci("02:00,device-id=0x10f6,sub-vendor-id=0x0000")
    assert hp.option("device-id") == "0x10f6"
    assert hostpci.parse_hostpci("00:02.0,mdev=i915-GVTg_V5_4").option("mdev") == "i915-GVTg_V5_4"
    assert hostpci.parse_hostpci("mapping=gpu0,pcie=1").mapping == "gpu0"
    # what vfiokit writes: a name under /usr/share/kvm/, which qemu-server prefixes with that folder
    assert hostpci.make_hostpci(["0000:01:00.0"], romfile="/usr/share/kvm/vbios.rom").render() == (
        "0000:01:00.0,romfile=vbios.rom")


def test_hostpci_parts_are_not_trimmed_but_blank_parts_are_skipped():
    # PVE::JSONSchema::parse_property_string: `next if $part =~ /^\s*$/`, then `^([^=]+)=(.+)$`
    # on the part as it is (no trimming), the key checked against $hostpci_fmt.
    assert hostpci.parse_hostpci("01:00.0,, ,pcie=1,").render() == "01:00.0,pcie=1"


@pytest.mark.parametrize("romfile", ["/root/vbios.rom", "../../x.rom", "/usr/share/kvm/gp107.rom", "dir/x y.rom"])
def test_any_romfile_of_the_format_reads_and_only_ours_are_refused_when_written(romfile):
    # $hostpci_fmt (PVE/QemuServer/PCI.pm): romfile pattern '[^,;]+'; print_hostpci_devices passes
    # `/usr/share/kvm/$romfile` whatever it is. Reading another VM's config must not fail on it.
    conf = pc.parse_config(f"hostpci0: 0000:02:00.0,romfile={romfile}\n")
    assert conf.hostpci()["hostpci0"].option("romfile") == romfile  # read as written, not rewritten
    assert pc.users_of({"107": conf}, "0000:02:00.0") == [("107", "hostpci0", f"0000:02:00.0,romfile={romfile}")]
    if romfile.startswith("/root") or ".." in romfile:
        with pytest.raises(BadInput, match="under /usr/share/kvm/"):
            hostpci.make_hostpci(["0000:01:00.0"], romfile=romfile)


def test_covers_slot_and_function():
    assert hostpci.covers("01:00", "0000:01:00.1")
    assert hostpci.covers("0000:01:00.0", "0000:01:00.0")
    assert not hostpci.covers("01:00.0", "0000:01:00.1")
    assert not hostpci.covers("0001:01:00", "0000:01:00.0")


def test_users_of_finds_host_and_mapping():
    confs = {
        "100": pc.parse_config("hostpci0: 01:00,pcie=1\n"),
        "101": pc.parse_config("hostpci2: mapping=nic\n"),
        "102": pc.parse_config("cores: 1\n\n[PENDING]\nhostpci0: 0000:05:00.0\n"),
    }
    maps = {"nic": ["0000:03:00.0;0000:03:00.1"]}
    assert pc.users_of(confs, "0000:01:00.1") == [("100", "hostpci0", "01:00,pcie=1")]
    assert pc.users_of(confs, "0000:03:00.1", maps) == [("101", "hostpci2", "mapping=nic")]
    assert pc.users_of(confs, "0000:05:00.0") == [("102", "hostpci0", "0000:05:00.0")]
    assert pc.users_of(confs, "0000:09:00.0", maps) == []


# --- property: every line we write parses back with the same options --------------------------------

hexd = st.sampled_from("0123456789abcdef")
pci_id = st.builds(
    lambda dom, bus, slot, fn: (f"{dom}:" if dom else "") + f"{bus}:{slot}" + (f".{fn}" if fn else ""),
    st.one_of(st.none(), st.text(hexd, min_size=4, max_size=4)),
    st.text(hexd, min_size=2, max_size=2),
    st.text(hexd, min_size=2, max_size=2),
    st.one_of(st.none(), st.sampled_from("01234567")),
)
hex_id = st.text(st.sampled_from("0123456789abcdefABCDEF"), min_size=4, max_size=4).map(lambda s: "0x" + s)
options = st.fixed_dictionaries({}, optional={
    "pcie": st.booleans(), "x_vga": st.booleans(), "rombar": st.booleans(), "legacy_igd": st.booleans(),
    "romfile": st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}\.rom", fullmatch=True),
    "mdev": st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True),
    "driver": st.sampled_from(["vfio", "keep"]),
    "vendor_id": hex_id, "device_id": hex_id, "sub_vendor_id": hex_id, "sub_device_id": hex_id,
})
target = st.one_of(
    st.lists(pci_id, min_size=1, max_size=3).map(lambda ids: {"host": ids}),
    st.from_regex(r"[a-z][a-z0-9_-]{1,15}", fullmatch=True).map(lambda m: {"mapping": m}),
)


@given(target, options)
def test_every_written_value_parses_back_the_same(tgt, opts):
    hp = hostpci.make_hostpci(**tgt, **opts)
    line = hp.render()
    again = hostpci.parse_hostpci(line)
    assert again == hp
    assert again.render() == line
    for name, v in opts.items():
        key = name.replace("_", "-")
        assert again.option(key) == (str(int(v)) if isinstance(v, bool) else v)
    # and through a config file: the same line reads back from the main section
    conf = pc.parse_config("cores: 2\n\n[snap]\ncores: 1\n")
    new = pc.parse_config(pc.set_option(conf, pc.first_free_index(conf), line))
    assert hostpci.parse_hostpci(new.value("hostpci0")) == hp


@given(st.lists(st.sampled_from(hostpci.HOSTPCI_KEYS), unique=True, max_size=15), st.booleans())
def test_add_then_delete_restores_the_file(used, running):
    text = CONFIG.replace("hostpci0: 0000:0a:00,pcie=1\n", "".join(f"{k}: 0000:01:00.0\n" for k in used))
    conf = pc.parse_config(text)
    key = pc.first_free_index(conf)
    assert key not in used
    added = pc.parse_config(pc.set_option(conf, key, "0000:02:00.0", running=running))
    assert added.effective(key) == "0000:02:00.0"
    if not running:
        assert pc.delete_option(added, key) == text


keys = st.sampled_from(["cores", "memory", "name", "net0", "scsi0", "boot", "agent", "machine", "bios", "vga"])
values = st.from_regex(r"[A-Za-z0-9=,;:._/-]{1,24}", fullmatch=True)
block = st.dictionaries(keys, values, max_size=6).map(lambda d: "".join(f"{k}: {v}\n" for k, v in d.items()))
configs = st.builds(
    lambda desc, main, pending, cloud, snaps: (
        "".join(f"#{d}\n" for d in desc) + main
        + ("\n[PENDING]\n" + pending if pending is not None else "")
        + ("\n[special:cloudinit]\n" + cloud if cloud is not None else "")
        + "".join(f"\n[{name}]\n{body}snaptime: 1700000000\n" for name, body in snaps.items())),
    st.lists(st.from_regex(r"[^\n\r]{0,30}", fullmatch=True), max_size=2),
    block, st.one_of(st.none(), block), st.one_of(st.none(), block),
    st.dictionaries(st.from_regex(r"snap[a-z0-9]{1,6}", fullmatch=True), block, max_size=3),
)


@settings(max_examples=60)
@given(configs, st.booleans(), st.sampled_from(["0000:01:00", "mapping=gpu,pcie=1"]))
def test_an_edit_keeps_every_other_section_byte_for_byte(text, running, value):
    conf = pc.parse_config(text)
    key = pc.first_free_index(conf)
    new = pc.set_option(conf, key, value, running=running)
    edited = "PENDING" if running else ""
    before, after = sections_except(text, edited), sections_except(new, edited)
    if running and "[PENDING]" not in text:  # a new [PENDING] is set apart by one blank line
        before[""], after[""] = before[""].rstrip("\n"), after[""].rstrip("\n")
    assert after == before
    old_lines, new_lines = text.split("\n"), new.split("\n")
    added = [ln for ln in new_lines if ln not in old_lines]
    assert f"{key}: {value}" in added and set(added) <= {f"{key}: {value}", "[PENDING]", ""}
    assert pc.parse_config(new).effective(key) == value


def test_keys_with_hyphens_are_config_lines_as_qemu_server_reads_them():
    text = "amd-sev: type=std\nmemory: 4096\n"
    conf = pc.parse_config(text)
    assert conf.value("amd-sev") == "type=std"
    new = pc.set_option(conf, pc.first_free_index(conf), "0000:07:00.0")
    assert new == "amd-sev: type=std\nhostpci0: 0000:07:00.0\nmemory: 4096\n"


def test_applying_pending_moves_every_pending_change_into_the_main_section():
    # qemu-server update_vm_api on a stopped VM: vmconfig_apply_pending applies all of [PENDING].
    text = ("#desc\ncores: 4\nhostpci1: 0000:07:00.0\nmemory: 8192\nname: media\n\n"
            "[PENDING]\ncores: 8\ndelete: hostpci1\nnet0: virtio=BC:24:11:5E:0F:01,bridge=vmbr0\n\n"
            "[snap1]\ncores: 2\nsnaptime: 1\n")
    assert pc.apply_pending(pc.parse_config(text)) == (
        "#desc\ncores: 8\nmemory: 8192\nname: media\nnet0: virtio=BC:24:11:5E:0F:01,bridge=vmbr0\n\n"
        "[snap1]\ncores: 2\nsnaptime: 1\n")
    assert pc.apply_pending(pc.parse_config("cores: 1\n\n[PENDING]\ncores: 2\n")) == "cores: 2\n"
    assert pc.apply_pending(pc.parse_config(CONFIG.split("[PENDING]")[0])) == CONFIG.split("[PENDING]")[0]


def test_the_config_diff_marks_a_last_line_without_newline():
    # A hand-edited config may end without newline; qemu-server writes one (the diff says so).
    old = "cores: 2\nhostpci0: 0000:04:00.0"
    new = pc.delete_option(pc.parse_config(old), "hostpci0")
    diff = pc.config_diff(old, new, "qemu-server/102.conf")
    assert "-hostpci0: 0000:04:00.0\n\\ No newline at end of file\n" in diff


def test_a_new_key_goes_where_qemu_server_writes_it():
    # write_vm_config writes each section's keys sorted (Perl string order: hostpci10 < hostpci2),
    # so on a file Proxmox wrote, the diff shows the line where Proxmox will put it.
    text = "#desc\nbios: ovmf\ncores: 4\nhostpci1: 0000:02:00.0\nmachine: q35\nname: x\n\n[snap]\ncores: 1\n"
    conf = pc.parse_config(text)
    assert pc.set_option(conf, "hostpci0", "0000:01:00") == text.replace(
        "hostpci1:", "hostpci0: 0000:01:00\nhostpci1:")
    assert pc.set_option(conf, "hostpci10", "0000:03:00") == text.replace(
        "machine:", "hostpci10: 0000:03:00\nmachine:")
    assert pc.set_option(conf, "vga", "none") == text.replace("name: x\n", "name: x\nvga: none\n")
    running = pc.set_option(pc.parse_config("cores: 1\n\n[PENDING]\ncores: 2\nmemory: 4\n"), "hostpci0",
                            "0000:01:00", running=True)
    assert running == "cores: 1\n\n[PENDING]\ncores: 2\nhostpci0: 0000:01:00\nmemory: 4\n"


def test_an_emptied_pending_section_goes_as_qemu_server_drops_it():
    # write_vm_config writes [PENDING] only when something is pending.
    t = "cores: 1\n\n[PENDING]\nhostpci1: 0000:01:00\n\n[snap]\ncores: 1\n"
    assert pc.delete_option(pc.parse_config(t), "hostpci1", running=True) == "cores: 1\n\n[snap]\ncores: 1\n"
    t = "cores: 1\n\n[PENDING]\nhostpci1: 0000:01:00\n"
    assert pc.delete_option(pc.parse_config(t), "hostpci1", running=True) == "cores: 1\n"


def test_setting_a_key_pending_deletion_replaces_the_deletion_cleanly():
    t = "cores: 1\nhostpci1: 0000:02:00\n\n[PENDING]\ndelete: hostpci1\n"
    assert pc.set_option(pc.parse_config(t), "hostpci1", "0000:03:00", running=True) == (
        "cores: 1\nhostpci1: 0000:02:00\n\n[PENDING]\nhostpci1: 0000:03:00\n")


# --- read as qemu-server reads: PVE/QemuServer.pm parse_vm_config ---------------------------------
# Each fixture below is written here (not copied from qemu-server's tests, which are AGPL).

TWO_PENDING = """\
cores: 2
memory: 2048
name: twice

[PENDING]
memory: 4096

[snap1]
cores: 1
snaptime: 1700000000

[PENDING]
cores: 8
hostpci1: 0000:05:00.0
"""


def test_a_second_pending_section_fails_strict_and_the_last_one_counts():
    # parse_vm_config: "duplicate section: pending" via $handle_error (dies when strict); non-strict
    # it warns and `$conf = $res->{pending} = {}` starts the pending hash afresh: the last one counts.
    with pytest.raises(BadInput, match=r"101.conf:12: duplicate section: \[PENDING\]"):
        pc.parse_config(TWO_PENDING, "101.conf")
    conf = pc.parse_config(TWO_PENDING, strict=False)
    assert conf.pending == {"cores": "8", "hostpci1": "0000:05:00.0"}
    assert conf.effective("memory") == "2048"  # the first [PENDING]'s memory counts for nothing
    assert set(conf.hostpci()) == {"hostpci1"}


def test_a_running_vm_change_goes_into_the_pending_section_qemu_server_keeps():
    conf = pc.parse_config(TWO_PENDING, strict=False)
    new = pc.set_option(conf, "hostpci0", "0000:01:00", running=True)
    assert new == TWO_PENDING.replace("cores: 8\n", "cores: 8\nhostpci0: 0000:01:00\n")
    assert pc.parse_config(new, strict=False).pending["hostpci0"] == "0000:01:00"
    # a key only pending loses its pending value; one in the main section gets a pending delete
    assert pc.delete_option(conf, "hostpci1", running=True) == TWO_PENDING.replace("hostpci1: 0000:05:00.0\n", "")
    assert pc.delete_option(conf, "memory", running=True) == TWO_PENDING.replace(
        "cores: 8\n", "cores: 8\ndelete: memory\n")


def test_applying_pending_applies_the_last_pending_and_drops_both():
    # qemu-server's vmconfig_apply_pending applies $conf->{pending}, the last section; its
    # write_vm_config writes no [PENDING] after: the ignored first one must not come back.
    new = pc.apply_pending(pc.parse_config(TWO_PENDING, strict=False))
    assert new == ("cores: 8\nhostpci1: 0000:05:00.0\nmemory: 2048\nname: twice\n\n"
                   "[snap1]\ncores: 1\nsnaptime: 1700000000\n")
    assert pc.parse_config(new).pending == {}


def test_attach_on_a_running_vm_with_two_pending_sections_uses_the_last():
    from vfiokit.analyses.vm_attach import AttachRequest, plan_attach
    from vfiokit.model import PciAddress

    conf = pc.parse_config(TWO_PENDING, strict=False)
    plan = plan_attach(AttachRequest("101", PciAddress.parse("0000:01:00.0")), conf, True, None, {}, {})
    assert plan.key == "hostpci0"  # hostpci1 is pending in the last [PENDING]
    tail = plan.new_text.split("[snap1]")[1]
    assert "hostpci0: 0000:01:00.0\n" in tail and "hostpci0" not in plan.new_text.split("[snap1]")[0]
    stopped = plan_attach(AttachRequest("101", PciAddress.parse("0000:01:00.0")), conf, False, None, {}, {})
    assert stopped.new_text == ("cores: 8\nhostpci0: 0000:01:00.0\nhostpci1: 0000:05:00.0\nmemory: 2048\n"
                                "name: twice\n\n[snap1]\ncores: 1\nsnaptime: 1700000000\n")


@pytest.mark.parametrize("header", ["[pending]", "[Pending]", "[PENDING]  "])
def test_the_pending_section_name_is_case_insensitive(header):
    # parse_vm_config matches `^\[PENDING\]\s*$` with /i: [pending] is not a snapshot called "pending".
    text = f"cores: 2\n\n{header}\nhostpci0: 0000:01:00.0\n"
    conf = pc.parse_config(text)
    assert conf.pending == {"hostpci0": "0000:01:00.0"}
    assert [s.kind for s in conf.sections] == ["main", "pending"]
    assert pc.users_of({"105": conf}, "0000:01:00.0") == [("105", "hostpci0", "0000:01:00.0")]
    assert pc.first_free_index(conf) == "hostpci1"
    new = pc.set_option(conf, "hostpci1", "0000:02:00.0", running=True)
    assert new == text + "hostpci1: 0000:02:00.0\n" and new.count("[") == 1
    assert pc.apply_pending(conf) == "cores: 2\nhostpci0: 0000:01:00.0\n"


@pytest.mark.parametrize("header, name", [
    ("[special:unknown123]", "special:unknown123"), ("[:3]", ":3"), ("[a]", "a"), ("[]", ""),
    ("[9snap]", "9snap"),
])
def test_an_unknown_section_fails_strict_and_its_lines_are_not_read(header, name):
    # parse_vm_config: a header that is not [PENDING], [special:cloudinit|fleecing] or a snapshot
    # name (`[a-z][a-z0-9_\-]+`) is "skipping unknown section" (dies when strict); non-strict,
    # `$section = undef` and every line up to the next header is skipped.
    text = f"cores: 2\n\n{header}\nhostpci0: 0000:01:00.0\nnot a config line\n\n[PENDING]\nmemory: 4\n"
    with pytest.raises(BadInput, match=re.escape(f"101.conf:3: unknown section '[{name}]'")):
        pc.parse_config(text, "101.conf")
    conf = pc.parse_config(text, strict=False)
    assert conf.hostpci() == {} and conf.pending == {"memory": "4"}
    assert pc.set_option(conf, "hostpci0", "0000:02:00.0") == text.replace(
        "cores: 2\n", "cores: 2\nhostpci0: 0000:02:00.0\n")


def test_known_sections_in_any_case():
    # special sections and snapshot names match with /i too; a snapshot keeps its name as written.
    text = "cores: 2\n\n[SPECIAL:CloudInit]\nipconfig0: ip=dhcp\n\n[Before-Upgrade]\ncores: 1\n"
    conf = pc.parse_config(text)
    assert [(s.kind, s.name) for s in conf.sections] == [
        ("main", ""), ("special", "special:CloudInit"), ("snapshot", "Before-Upgrade")]


@pytest.mark.parametrize("line", ["memory:", "memory:   ", "memory:\t"])
def test_a_key_without_value_is_not_a_config_line(line):
    # parse_vm_config's key line is `^([a-z][a-z_\-]*\d*):\s*(.+?)\s*$`: nothing after the colon
    # is "unable to parse config" (dies when strict, the line is skipped otherwise).
    text = f"cores: 2\n{line}\nname: x\n"
    with pytest.raises(BadInput, match=r"101\.conf:2: 'memory' has no value"):
        pc.parse_config(text, "101.conf")
    conf = pc.parse_config(text, strict=False)
    assert conf.value("memory") is None and conf.value("name") == "x"


def test_a_repeated_key_keeps_its_last_value_and_an_edit_leaves_one_line():
    # parse_vm_config assigns `$conf->{$key} = $value` again: the last line wins, no error in
    # either mode. write_vm_config writes one line per key, so an edit leaves one.
    text = "cores: 2\nhostpci0: 0000:01:00.0\nmemory: 512\nhostpci0: 0000:02:00.0\nname: x\n"
    conf = pc.parse_config(text)
    assert conf.value("hostpci0") == "0000:02:00.0"
    assert pc.users_of({"100": conf}, "0000:01:00.0") == []
    assert pc.set_option(conf, "hostpci0", "0000:03:00.0") == (
        "cores: 2\nmemory: 512\nhostpci0: 0000:03:00.0\nname: x\n")
    assert pc.delete_option(conf, "hostpci0") == "cores: 2\nmemory: 512\nname: x\n"
    pend = "cores: 2\n\n[PENDING]\ndelete: hostpci1\ndelete: hostpci0\n"
    assert pc.parse_config(pend).pending_deletes == {"hostpci0"}
    assert pc.set_option(pc.parse_config(pend), "hostpci0", "0000:03:00", running=True) == (
        "cores: 2\n\n[PENDING]\nhostpci0: 0000:03:00\n")


def test_delete_is_only_a_pending_key():
    # parse_vm_config: "property 'delete' is only allowed in [PENDING]".
    with pytest.raises(BadInput, match=r"config:2: property 'delete' is only allowed in \[PENDING\]"):
        pc.parse_config("cores: 2\ndelete: hostpci0\n")
    assert pc.parse_config("cores: 2\ndelete: hostpci0\n", strict=False).main.values == {"cores": "2"}


def test_a_host_list_is_one_device_of_every_id_it_names():
    # qemu-server parse_hostpci pushes `[split(/;/, $host)]` as ONE alternative: every id is passed
    # to the VM together (choose_hostpci_devices marks them all used). Alternatives exist only for
    # mappings: one per `map` entry of the node (get_node_mapping), a `;` path again one device.
    from vfiokit.analyses.vm_attach import AttachRequest, plan_attach, plan_detach
    from vfiokit.errors import Refused
    from vfiokit.model import PciAddress

    both = pc.parse_config("hostpci0: 0000:04:00.0;0000:05:00.0\nname: nas\n")
    assert hostpci.parse_hostpci("0000:04:00.0;0000:05:00.0").host == ("0000:04:00.0", "0000:05:00.0")
    for addr in ("0000:04:00.0", "0000:05:00.0"):
        assert pc.users_of({"102": both}, addr) == [("102", "hostpci0", "0000:04:00.0;0000:05:00.0")]
        with pytest.raises(Refused, match=f"{addr} is already given to VM 102"):
            plan_attach(AttachRequest("101", PciAddress.parse(addr)), pc.parse_config("name: x\n"), False,
                        None, {"102": both}, {})
        # the VM itself: the same function again is "assigned more than once" at its start
        with pytest.raises(Refused, match=f"device '{addr}' assigned more than once"):
            plan_attach(AttachRequest("102", PciAddress.parse(addr)), both, False, None, {}, {})
    # detaching one of them takes the whole entry, and says what else goes with it
    plan = plan_detach("102", both, False, PciAddress.parse("0000:05:00.0"), None, None, {})
    assert plan.new_text == "name: nas\n"
    assert any("also names 0000:04:00.0: the whole entry goes" in n for n in plan.notes)
    # a mapping: each map entry is an alternative, its `;` path one device of both functions
    paths = {"gpu": ["0000:01:00.0;0000:01:00.1", "0000:02:00.0;0000:02:00.1"]}
    plan = plan_attach(AttachRequest("101", mapping="gpu"), pc.parse_config("name: x\n"), False, None, {}, paths)
    assert plan.functions == ["0000:01:00.0", "0000:01:00.1"]  # the first alternative, both functions


def test_a_hostpci_value_outside_the_format_is_refused_strict_and_not_kept_otherwise():
    # parse_vm_config: check_type($key, $value) against $hostpci_fmt; on failure "unable to parse
    # value of 'hostpci0'" (dies when strict), and the value is not kept: an earlier valid line of
    # the key still counts, and the VM starts without the bad one.
    text = "cores: 2\nhostpci0: 0000:01:00.0\nhostpci0: 0000:02:00.0, pcie=1\nhostpci1: 0000:03:00.0,x=1\n"
    with pytest.raises(BadInput, match=re.escape("101.conf:3: hostpci0: invalid key in comma-separated list "
                                                 "property: ' pcie'")):
        pc.parse_config(text, "101.conf")
    conf = pc.parse_config(text, strict=False)
    assert {k: hp.render() for k, hp in conf.hostpci().items()} == {"hostpci0": "0000:01:00.0"}
    assert pc.users_of({"102": conf}, "0000:02:00.0") == []
    # a cloud-init section is not checked (parse_vm_config: "ignore validation")
    assert pc.parse_config("cores: 2\n\n[special:cloudinit]\nhostpci0: what\n").hostpci() == {}


def test_the_pending_delete_list_keeps_its_forced_marks():
    # pve-guest-common AbstractConfig parse_pending_delete / print_pending_delete: `!key` is a
    # forced deletion; adding or removing another key rewrites the list sorted, marks kept.
    t = "cores: 1\nhostpci0: 0000:01:00\nnet0: virtio\nscsi1: x\n\n[PENDING]\ndelete: !scsi1;net0\n"
    conf = pc.parse_config(t)
    assert conf.pending_deletes == {"scsi1", "net0"}
    assert pc.delete_option(conf, "hostpci0", running=True).endswith("delete: hostpci0,net0,!scsi1\n")
    assert pc.set_option(conf, "net0", "e1000", running=True).endswith("delete: !scsi1\nnet0: e1000\n")


def test_a_bad_config_line_is_named_as_fields_for_the_json_error():
    with pytest.raises(BadInput) as e:
        pc.parse_config("cores: 4\nmemory: 2048\nballoon:\n", "/etc/pve/qemu-server/100.conf")
    assert e.value.fields() == {"file": "/etc/pve/qemu-server/100.conf", "line": 3}


@pytest.mark.parametrize("text, want", [
    ("07:00.0", ("0000:07:00.0", False)), ("0000:07:00", ("0000:07:00.0", True)),
    ("01:00", ("0000:01:00.0", True)), (" 0001:02:1f.7 ", ("0001:02:1f.7", False)),
    ("07:00.8", None), ("7:0.0", None), ("07:20.0", None), ("gpu", None),
])
def test_one_reader_of_an_address_or_a_slot(text, want):
    # check, attach, cluster map and the host-usage facts all read a device argument with it.
    got = hostpci.parse_host_id(text)
    assert (None if got is None else (str(got[0]), got[1])) == want
