"""Proxmox VE VM configs as text: parse them, and make an edit that keeps every byte.

Pure: no I/O. The file format is qemu-server's `parse_vm_config` (PVE/QemuServer.pm): `key: value`
lines, a description as leading `#` lines, then sections `[PENDING]`, `[special:cloudinit]` and one
`[snapname]` per snapshot. An edit touches only the main section (or, for a running VM, `[PENDING]`,
which qemu-server writes right after the main section), and only the one line it changes; snapshots,
comments, blank lines and the order of other keys stay byte for byte.

The text edits (`set_option`, `delete_option`, `apply_pending`) live here, not in `edits/`: they are
pure text -> text transforms that follow qemu-server's own file rules ([PENDING] placement, the
`delete` key), and an analysis (`vm_attach`) needs the new text to show its plan; writing it stays
with `edits/` and the one writer. The `hostpciN` grammar is `pve_hostpci`, the mappings file
`pve_mapping`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from vfiokit.errors import BadInput
from vfiokit.formats.pve_hostpci import HOSTPCI_KEYS, MAX_HOSTPCI, HostPci, covers, parse_hostpci

#: What qemu-server says when a config changed under the `digest` a writer sent (update_vm_api:
#: "checksum mismatch (file change by other user?)"; older and newer wordings).
CONFLICT_MARKS = ("checksum mismatch", "detected modified configuration")

# --- the config file -------------------------------------------------------------------------------

_SECTION_RE = re.compile(r"^\[([^\]]+)\]\s*$")
# qemu-server's parse_vm_config accepts hyphens in keys (amd-sev, ...): `^([a-z][a-z_\-]*\d*):`.
_KEY_RE = re.compile(r"^([a-z][a-z_\-]*\d*):\s*(.*?)\s*$")
MAIN = ""
PENDING = "PENDING"


@dataclass
class Section:
    name: str
    #: Index in the line list of the section header (-1 for the main section) and one past its end.
    start: int
    end: int
    values: dict[str, str] = field(default_factory=dict)
    #: Line index of each key.
    lines: dict[str, int] = field(default_factory=dict)


@dataclass
class VmConfig:
    """A VM config file as lines, with where each section and key is."""

    text: str
    lines: list[str]
    sections: list[Section]

    @property
    def digest(self) -> str:
        """SHA1 of the file, what qemu-server calls the config's `digest`."""
        import hashlib  # here: read-only commands parse VM configs but never need a digest

        return hashlib.sha1(self.text.encode()).hexdigest()

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)

    @property
    def main(self) -> Section:
        return self.sections[0]

    @property
    def pending(self) -> dict[str, str]:
        s = self.section(PENDING)
        return dict(s.values) if s else {}

    @property
    def pending_deletes(self) -> set[str]:
        """Keys `[PENDING]` will delete at the next start (`delete: a,b`; `!` marks forced ones)."""
        raw = self.pending.get("delete", "")
        return {k.strip().lstrip("!") for k in re.split(r"[,;\s]+", raw) if k.strip()}

    def value(self, key: str) -> str | None:
        return self.main.values.get(key)

    def effective(self, key: str) -> str | None:
        """The value the VM gets at its next start: the pending one if any, else the current one."""
        if key in self.pending_deletes:
            return None
        return self.pending.get(key, self.value(key))

    def hostpci(self, where: str = "") -> dict[str, HostPci]:
        """Every `hostpciN`, current or pending (pending wins), parsed."""
        out = {}
        for key in HOSTPCI_KEYS:
            value = self.pending.get(key, self.value(key))
            if value is not None:
                out[key] = parse_hostpci(value, f"{where}{key}")
        return out

    def used_keys(self) -> set[str]:
        return set(self.main.values) | set(self.pending) | self.pending_deletes

    def is_q35(self) -> bool:
        """qemu-server machine_type_is_q35: the `machine` type contains q35."""
        machine = (self.effective("machine") or "").split(",")[0]
        if machine.startswith("type="):
            machine = machine[5:]
        return "q35" in machine

    def bios(self) -> str:
        return self.effective("bios") or "seabios"


def parse_config(text: str, where: str = "config", strict: bool = True) -> VmConfig:
    """Split a config into sections; `BadInput` naming the line for anything qemu-server would not read.

    `strict=False` is for readers that must not fail on one odd line (host facts): such a line is
    skipped and a repeated key keeps its last value, as qemu-server's non-strict parse_vm_config
    does. Never plan an edit on a config read that way.
    """
    # lines end at "\n" only, as qemu-server splits them (str.splitlines would also split at \x1e, \x85...)
    lines = [ln for ln in re.split(r"(?<=\n)", text) if ln]
    sections = [Section(MAIN, -1, len(lines))]
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        m = _SECTION_RE.match(body)
        if m:
            sections[-1].end = i
            sections.append(Section(m.group(1), i, len(lines)))
            continue
        if not body.strip() or body.startswith("#"):
            continue
        m = _KEY_RE.match(body)
        if not m:
            if not strict:
                continue
            raise BadInput(f"{where}:{i + 1}: cannot read '{body}' (expected 'key: value')")
        key, value = m.groups()
        cur = sections[-1]
        if key in cur.values and strict:
            raise BadInput(f"{where}:{i + 1}: '{key}' appears twice in section "
                           f"{'[' + cur.name + ']' if cur.name else 'main'}")
        cur.values[key] = value
        cur.lines[key] = i
    return VmConfig(text, lines, sections)


def first_free_index(conf: VmConfig) -> str:
    """The first `hostpciN` key not used now, pending, or pending deletion; `BadInput` when all 16 are."""
    used = conf.used_keys()
    for key in HOSTPCI_KEYS:
        if key not in used:
            return key
    raise BadInput(f"all {MAX_HOSTPCI} hostpci slots (hostpci0..hostpci15) are used in this VM")


def _newline(conf: VmConfig) -> str:
    return "\r\n" if conf.lines and conf.lines[0].endswith("\r\n") else "\n"


def _insert_at(conf: VmConfig, sec: Section) -> int:
    """Where a new key goes: after the section's last non-blank line (before trailing blank lines)."""
    i = sec.end
    while i > sec.start + 1 and not conf.lines[i - 1].strip():
        i -= 1
    return i


def _set_in(conf: VmConfig, lines: list[str], sec: Section, key: str, value: str) -> None:
    nl = _newline(conf)
    if key in sec.lines:
        lines[sec.lines[key]] = f"{key}: {value}{nl}"
        return
    # qemu-server write_vm_config writes a section's keys sorted (Perl's string order, which is
    # Python's for these ASCII keys): the new key goes before the first key that sorts after it.
    after = [i for k, i in sec.lines.items() if k > key]
    if after:
        lines.insert(min(after), f"{key}: {value}{nl}")
        return
    at = _insert_at(conf, sec)
    if at > 0 and not lines[at - 1].endswith("\n"):
        lines[at - 1] += nl
    lines.insert(at, f"{key}: {value}{nl}")


def _add_pending(conf: VmConfig, lines: list[str], line: str) -> None:
    """A new `[PENDING]` section holding `line`, right after the main section (write_vm_config's place)."""
    nl = _newline(conf)
    at = _insert_at(conf, conf.main)
    if at > 0 and not lines[at - 1].endswith("\n"):
        lines[at - 1] += nl
    lines[at:at] = ([nl] if at > 0 else []) + [f"[PENDING]{nl}", f"{line}{nl}"]


def set_option(conf: VmConfig, key: str, value: str, running: bool = False) -> str:
    """The config text after `qm set VMID --KEY VALUE`, every other byte kept.

    A stopped VM gets the value in its main section. A running VM gets it under `[PENDING]`
    (hostpci is not hot-pluggable, qemu-server keeps it there until the next start), created right
    after the main section when missing; a pending deletion of the same key is cancelled.
    """
    lines = list(conf.lines)
    if not running:
        _set_in(conf, lines, conf.main, key, value)
        pend = conf.section(PENDING)
        if pend is not None and key in pend.lines:  # qm set on a stopped VM applies pending too
            del lines[pend.lines[key]]
        return "".join(lines)
    pend = conf.section(PENDING)
    if pend is None:
        _add_pending(conf, lines, f"{key}: {value}")
        return "".join(lines)
    if key in conf.pending_deletes:
        rest = sorted(conf.pending_deletes - {key})
        line = pend.lines["delete"]
        lines[line] = f"delete: {','.join(rest)}{_newline(conf)}" if rest else ""
        conf = parse_config("".join(lines), strict=False)  # the line indexes moved
        lines, pend = list(conf.lines), conf.section(PENDING)
        assert pend is not None
    _set_in(conf, lines, pend, key, value)
    return "".join(lines)


def _without_pending(conf: VmConfig) -> list[str]:
    """The config's lines without its `[PENDING]` section (and, when that was the last section, the
    blank lines that set it apart)."""
    lines = list(conf.lines)
    pend = conf.section(PENDING)
    if pend is None:
        return lines
    start = pend.start
    if pend.end == len(lines):
        while start > 0 and not lines[start - 1].strip():
            start -= 1
    del lines[start:pend.end]
    return lines


def _drop_empty_pending(text: str) -> str:
    """qemu-server write_vm_config writes `[PENDING]` only when something is pending."""
    conf = parse_config(text, strict=False)
    pend = conf.section(PENDING)
    if pend is None or any(ln.strip() for ln in conf.lines[pend.start + 1:pend.end]):
        return text
    return "".join(_without_pending(conf))


def apply_pending(conf: VmConfig) -> str:
    """The config text once `[PENDING]` is applied, as `qm set` (or the API) does to a stopped VM:
    qemu-server update_vm_api calls vmconfig_apply_pending, which moves every pending value into
    the main section, carries out the pending deletions and drops `[PENDING]`, whatever key the
    call itself changed. Every other byte is kept."""
    pend = conf.section(PENDING)
    if pend is None:
        return conf.text
    text = "".join(_without_pending(conf))
    for key in sorted(conf.pending_deletes):
        text = delete_option(parse_config(text, strict=False), key)
    for key, value in pend.values.items():
        if key != "delete":
            text = set_option(parse_config(text, strict=False), key, value)
    return text


def delete_option(conf: VmConfig, key: str, running: bool = False) -> str:
    """The config text after `qm set VMID --delete KEY`, every other byte kept.

    A stopped VM loses the line (and any pending value of it). A running VM keeps it until the next
    start: `[PENDING]` gets `delete: KEY` (qemu-server vmconfig_delete_pending_option).
    """
    lines = list(conf.lines)
    pend = conf.section(PENDING)
    if not running:
        drop = [conf.main.lines.get(key)]
        if pend is not None:
            drop.append(pend.lines.get(key))
        for i in sorted((i for i in drop if i is not None), reverse=True):
            del lines[i]
        return "".join(lines)
    if pend is not None and key in pend.lines:
        lines[pend.lines[key]] = ""
    if key not in conf.main.values:
        return _drop_empty_pending("".join(lines))
    deletes = sorted(conf.pending_deletes | {key})
    if pend is None:
        _add_pending(conf, lines, f"delete: {','.join(deletes)}")
        return "".join(lines)
    _set_in(conf, lines, pend, "delete", ",".join(deletes))
    return "".join(lines)


def unified_diff(old: str, new: str, name: str) -> str:
    from vfiokit.formats.diff import unified_diff as patch_diff  # difflib: for writes only

    return patch_diff(old, new, f"a/{name}", f"b/{name}")


def users_of(configs: Mapping[str, VmConfig], address: str,
             mapping_paths: Mapping[str, list[str]] | None = None) -> list[tuple[str, str, str]]:
    """VMs that already take the function at `address` (`DDDD:BB:DD.F`): (vmid, key, value).

    `mapping_paths` gives, for each mapping id, the device paths it maps on this node, so a VM
    using `mapping=NAME` is found too.
    """
    out = []
    for vmid, conf in sorted(configs.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0):
        seen = set()
        for key in HOSTPCI_KEYS:
            for value in (conf.value(key), conf.pending.get(key)):
                if value is None or (key, value) in seen:
                    continue
                seen.add((key, value))
                hp = parse_hostpci(value, f"VM {vmid}: {key}")
                ids = list(hp.host)
                if hp.mapping is not None:
                    ids = [p for path in (mapping_paths or {}).get(hp.mapping, []) for p in path.split(";")]
                if any(covers(i, address) for i in ids):
                    out.append((vmid, key, value))
    return out
