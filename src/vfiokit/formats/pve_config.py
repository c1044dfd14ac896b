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

# The section headers qemu-server's parse_vm_config knows, tried in its order; all case-insensitive
# (its `/i`), so `[pending]` is the pending section. `\s` there is ASCII whitespace (re.ASCII).
_PENDING_RE = re.compile(r"\[PENDING\]\s*", re.IGNORECASE | re.ASCII)
_SPECIAL_RE = re.compile(r"\[special:(cloudinit|fleecing)\]\s*", re.IGNORECASE | re.ASCII)
_SNAPSHOT_RE = re.compile(r"\[([a-z][a-z0-9_\-]+)\]\s*", re.IGNORECASE | re.ASCII)
_ANY_SECTION_RE = re.compile(r"\[([^\]]*)\]\s*", re.ASCII)
# qemu-server's parse_vm_config accepts hyphens in keys (amd-sev, ...): `^([a-z][a-z_\-]*\d*):`,
# and a value must hold something (`(.+?)`; `.*\S` for delete, description and args).
_KEY_RE = re.compile(r"([a-z][a-z_\-]*\d*):\s*(.*?)\s*", re.ASCII)
_BLANK_RE = re.compile(r"\s*", re.ASCII)
MAIN = ""
PENDING = "PENDING"


@dataclass
class Section:
    name: str
    #: Index in the line list of the section header (-1 for the main section) and one past its end.
    start: int
    end: int
    values: dict[str, str] = field(default_factory=dict)
    #: Line index of each key: of its last line, the one qemu-server keeps when a key repeats.
    lines: dict[str, int] = field(default_factory=dict)
    #: "main", "pending", "special", "snapshot", or "unknown" (its lines are not read, as qemu-server
    #: skips them).
    kind: str = "main"
    #: Every line index of each key (a repeated key has several; the earlier ones count for nothing).
    all_lines: dict[str, list[int]] = field(default_factory=dict)


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
        """The section `name` as qemu-server keeps it: the last one of that name (non-strict
        parse_vm_config replaces an earlier one), never an unknown one."""
        return next((s for s in reversed(self.sections) if s.name == name and s.kind != "unknown"), None)

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
        return set(_delete_hash(self))

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


def _header(body: str) -> tuple[str, str] | None:
    """(kind, name) of a section header line, in parse_vm_config's order of tests; None if not one."""
    if _PENDING_RE.fullmatch(body):
        return "pending", PENDING
    m = _SPECIAL_RE.fullmatch(body)
    if m:
        return "special", f"special:{m.group(1)}"
    m = _SNAPSHOT_RE.fullmatch(body)
    if m:
        return "snapshot", m.group(1)
    m = _ANY_SECTION_RE.fullmatch(body)
    if m:
        return "unknown", m.group(1)
    return None


def parse_config(text: str, where: str = "config", strict: bool = True) -> VmConfig:
    """Split a config into sections as qemu-server's parse_vm_config (PVE/QemuServer.pm) reads it.

    `strict=True` raises `BadInput` naming the line where parse_vm_config's strict mode dies: a
    second `[PENDING]` (or snapshot, or special section), an unknown section (`[special:x]`, `[:3]`,
    a one-letter `[a]`), a line that is not `key: value`, a key without a value (`memory:`), a
    `delete:` outside `[PENDING]`. `strict=False` is what qemu-server itself does when it loads a
    config (cfs_read_file passes no `strict`): such a line is skipped with its warning, a repeated
    section replaces the earlier one (so the LAST `[PENDING]` counts), an unknown section's lines
    are not read. In both modes a repeated key keeps its last value (parse_vm_config assigns it
    again); qemu-server validates each value against its schema, which vfiokit does only for
    `hostpciN` (`pve_hostpci`): a value that fails is refused (strict) or not kept, and an earlier
    valid line of that key then still counts, as in qemu-server.

    It stays whole because it follows parse_vm_config's single loop over lines, where the order of
    the tests (header, comment, key, value checks) is the grammar.
    """
    # lines end at "\n" only, as qemu-server splits them (str.splitlines would also split at \x1e, \x85...)
    lines = [ln for ln in re.split(r"(?<=\n)", text) if ln]
    sections = [Section(MAIN, -1, len(lines))]
    seen: set[tuple[str, str]] = set()
    for i, line in enumerate(lines):
        body = line[:-1] if line.endswith("\n") else line
        if _BLANK_RE.fullmatch(body):
            continue
        header = _header(body)
        if header is not None:
            kind, name = header
            if kind == "unknown" and strict:
                raise BadInput(f"{where}:{i + 1}: unknown section '[{name}]' (qemu-server parse_vm_config "
                               "skips it and every line in it)")
            if (kind, name) in seen and strict:
                raise BadInput(f"{where}:{i + 1}: duplicate section: {body.strip()} (qemu-server "
                               "parse_vm_config refuses it in strict mode, else keeps only the last one)")
            seen.add((kind, name))
            sections[-1].end = i
            sections.append(Section(name, i, len(lines), kind=kind))
            continue
        cur = sections[-1]
        if cur.kind == "unknown" or body.startswith("#"):
            continue
        m = _KEY_RE.fullmatch(body)
        problem = None
        if not m:
            problem = f"cannot read '{body.rstrip()}' (expected 'key: value')"
        elif not m.group(2):
            problem = f"'{m.group(1)}' has no value (qemu-server parse_vm_config cannot parse '{body.strip()}')"
        elif m.group(1) == "delete" and cur.kind != "pending":
            problem = "property 'delete' is only allowed in [PENDING]"
        elif m.group(1) in HOSTPCI_KEYS and cur.kind != "special":
            # check_type against $hostpci_fmt: a value that fails is not kept (the VM starts
            # without it), or dies when strict ("unable to parse value of 'hostpciN'")
            try:
                parse_hostpci(m.group(2), m.group(1))
            except BadInput as e:
                problem = str(e)
        if problem is not None:
            if not strict:
                continue
            raise BadInput(f"{where}:{i + 1}: {problem}", file=where, line=i + 1)
        key, value = m.groups()  # type: ignore[union-attr]
        cur.values[key] = value
        cur.lines[key] = i
        cur.all_lines.setdefault(key, []).append(i)
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


def _insert_at(lines: list[str], sec: Section) -> int:
    """Where a new key goes: after the section's last non-blank line (before trailing blank lines,
    and lines an edit emptied)."""
    i = sec.end
    while i > sec.start + 1 and not lines[i - 1].strip():
        i -= 1
    return i


def _set_in(conf: VmConfig, lines: list[str], sec: Section, key: str, value: str) -> None:
    nl = _newline(conf)
    if key in sec.lines:
        lines[sec.lines[key]] = f"{key}: {value}{nl}"
        # a repeated key: the earlier lines counted for nothing and qemu-server writes one line
        for i in sec.all_lines[key][:-1]:
            lines[i] = ""
        return
    # qemu-server write_vm_config writes a section's keys sorted (Perl's string order, which is
    # Python's for these ASCII keys): the new key goes before the first key that sorts after it.
    after = [i for k, i in sec.lines.items() if k > key]
    if after:
        lines.insert(min(after), f"{key}: {value}{nl}")
        return
    at = _insert_at(lines, sec)
    if at > 0 and not lines[at - 1].endswith("\n"):
        lines[at - 1] += nl
    lines.insert(at, f"{key}: {value}{nl}")


def _add_pending(conf: VmConfig, lines: list[str], line: str) -> None:
    """A new `[PENDING]` section holding `line`, right after the main section (write_vm_config's place)."""
    nl = _newline(conf)
    at = _insert_at(lines, conf.main)
    if at > 0 and not lines[at - 1].endswith("\n"):
        lines[at - 1] += nl
    lines[at:at] = ([nl] if at > 0 else []) + [f"[PENDING]{nl}", f"{line}{nl}"]


def _delete_hash(conf: VmConfig) -> dict[str, bool]:
    """`[PENDING]`'s `delete:` as pve-guest-common AbstractConfig parse_pending_delete reads it:
    key -> forced (`!key`)."""
    raw = re.split(r"\s+", re.sub(r"[,;]", " ", conf.pending.get("delete", "")).strip(), flags=re.ASCII)
    return {e[1:] if e.startswith("!") else e: e.startswith("!") for e in raw if e}


def _print_deletes(deletes: dict[str, bool]) -> str:
    """AbstractConfig print_pending_delete: sorted, forced ones marked `!`."""
    return ",".join(("!" if deletes[k] else "") + k for k in sorted(deletes))


def _pending_names(conf: VmConfig, key: str) -> bool:
    """Whether `[PENDING]` holds `key` (a value, or a deletion): an edit of it may empty the section."""
    return key in conf.pending or key in conf.pending_deletes


def _cancel_pending_delete(conf: VmConfig, lines: list[str], key: str) -> None:
    """Take `key` out of `[PENDING]`'s `delete:` (AbstractConfig remove_from_pending_delete), in
    place: a line emptied, never removed, so line indexes stay."""
    pend = conf.section(PENDING)
    deletes = _delete_hash(conf)
    if pend is None or key not in deletes:
        return
    del deletes[key]
    *earlier, last = pend.all_lines["delete"]
    for i in earlier:  # a repeated `delete:` would count once the last one is gone
        lines[i] = ""
    lines[last] = f"delete: {_print_deletes(deletes)}{_newline(conf)}" if deletes else ""


def set_option(conf: VmConfig, key: str, value: str, running: bool = False) -> str:
    """The config text after `qm set VMID --KEY VALUE`, every other byte kept.

    A stopped VM gets the value in its main section (and loses any pending value of it). A running
    VM gets it under `[PENDING]` (hostpci is not hot-pluggable, qemu-server keeps it there until the
    next start), created right after the main section when missing. Either way a pending deletion
    of the same key is cancelled (update_vm_api: remove_from_pending_delete).
    """
    lines = list(conf.lines)
    pend = conf.section(PENDING)
    _cancel_pending_delete(conf, lines, key)
    if not running:
        for i in pend.all_lines.get(key, []) if pend is not None else ():
            lines[i] = ""  # qm set on a stopped VM applies pending too (before _set_in moves indexes)
        _set_in(conf, lines, conf.main, key, value)
        return _drop_empty_pending("".join(lines)) if _pending_names(conf, key) else "".join(lines)
    if pend is None:
        _add_pending(conf, lines, f"{key}: {value}")
        return "".join(lines)
    _set_in(conf, lines, pend, key, value)
    return "".join(lines)


def _without_pending(conf: VmConfig) -> list[str]:
    """The config's lines without its `[PENDING]` sections (and, when one was the last section, the
    blank lines that set it apart). Every one goes: an earlier `[PENDING]`, which qemu-server
    ignored, would count once the last one is gone (qemu-server's own write drops it too)."""
    lines = list(conf.lines)
    for pend in reversed([s for s in conf.sections if s.kind == "pending"]):
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
        for sec in (conf.main, pend):
            for i in sec.all_lines.get(key, []) if sec is not None else ():
                lines[i] = ""  # every line of it: an earlier repeat would count once the last is gone
        _cancel_pending_delete(conf, lines, key)
        return _drop_empty_pending("".join(lines)) if _pending_names(conf, key) else "".join(lines)
    for i in pend.all_lines.get(key, []) if pend is not None else ():
        lines[i] = ""
    if key not in conf.main.values:
        return _drop_empty_pending("".join(lines)) if _pending_names(conf, key) else "".join(lines)
    deletes = _delete_hash(conf)
    deletes.setdefault(key, False)  # AbstractConfig add_to_pending_delete: the others keep their `!`
    if pend is None:
        _add_pending(conf, lines, f"delete: {_print_deletes(deletes)}")
        return "".join(lines)
    _set_in(conf, lines, pend, "delete", _print_deletes(deletes))
    return "".join(lines)


def config_diff(old: str, new: str, name: str) -> str:
    """The diff of a VM config as `git diff` names it (`a/NAME`, `b/NAME`)."""
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
