"""Properties of the VM config reader and its edits, on configs built from the file grammar of
qemu-server's parse_vm_config (PVE/QemuServer.pm): description (`#`) lines, `key: value` lines
(a key may repeat, the last one counts), blank lines, a `[PENDING]` section with `delete:`, special
sections and snapshots, their headers in any case and the sections in any order, LF or CRLF, with
or without a final newline. Generated here from that grammar, never copied from Proxmox's tests.

Each config is built from a model (what each section holds), so the reader is checked against the
model, and each edit against what must change: the edited key's lines (and the `[PENDING]` lines
that carry it), nothing else.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from hypothesis import example, given, settings
from hypothesis import strategies as st

from vfiokit.formats import pve_config as pc

KEYS = ["agent", "amd-sev", "bios", "boot", "cores", "description", "hostpci0", "hostpci1", "hostpci10",
        "hostpci3", "machine", "memory", "name", "net0", "scsi0", "vga"]
# printable ASCII plus a few non-ASCII characters (U+00A0 is not whitespace for qemu-server,
# which reads bytes); no line break, and not blank at either end (qemu-server trims a value)
_CHARS = "".join(chr(c) for c in range(0x20, 0x7F)) + "é€\u00a0"
value = st.text(st.sampled_from(_CHARS), min_size=1, max_size=16).filter(
    lambda v: v[0] not in " \t" and v[-1] not in " \t")
# a hostpciN value must be one of $hostpci_fmt (parse_vm_config checks it): built from its grammar
_hex2 = st.text(st.sampled_from("0123456789abcdef"), min_size=2, max_size=2)
hostpci_value = st.builds(
    lambda ids, opts: ";".join(ids) + "".join("," + o for o in opts),
    st.lists(st.builds(lambda b, d, f: f"{b}:{d}" + (f".{f}" if f else ""), _hex2, _hex2,
                       st.sampled_from(["", "0", "1", "7"])), min_size=1, max_size=2),
    st.lists(st.sampled_from(["pcie=1", "x-vga=on", "rombar=0", "romfile=/root/v.rom", "mdev=i915-GVTg_V5_4"]),
             unique=True, max_size=2),
) | st.sampled_from(["mapping=gpu", "mapping=nic,pcie=1"])
blank = st.sampled_from(["", " ", "\t"])
comment = st.text(st.sampled_from(_CHARS), max_size=12).map(lambda t: "#" + t)


@dataclass
class Built:
    text: str
    nl: str
    #: per (kind, name): the values each section holds (the last line of a repeated key)
    model: dict[tuple[str, str], dict[str, str]]


@st.composite
def key_lines(draw, keys=KEYS, pending=False):
    """A section body: key lines (keys may repeat), comments and blank lines; with its model."""
    lines, model = [], {}
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["key", "key", "key", "comment", "blank"]))
        if kind == "comment":
            lines.append(draw(comment))
        elif kind == "blank":
            lines.append(draw(blank))
        else:
            k = draw(st.sampled_from(keys))
            v = draw(hostpci_value if k.startswith("hostpci") else value)
            lines.append(f"{k}:{draw(st.sampled_from(['', ' ', '  ', chr(9)]))}{v}{draw(blank)}")
            model[k] = v
    if pending and draw(st.booleans()):
        dels = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True))
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, "delete: " + ",".join(("!" if draw(st.booleans()) else "") + d for d in dels))
        model["delete"] = lines[at][len("delete: "):]
    return lines, model


snap_name = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_-]{1,8}", fullmatch=True).filter(lambda n: n.lower() != "pending")


@st.composite
def configs(draw) -> Built:
    nl = draw(st.sampled_from(["\n", "\r\n"]))
    main, model_main = draw(key_lines())
    lines = [draw(comment) for _ in range(draw(st.integers(0, 2)))] + main
    model = {("main", ""): model_main}
    sections = []
    if draw(st.booleans()):
        header = draw(st.sampled_from(["[PENDING]", "[pending]", "[Pending]", "[PENDING]  "]))
        sections.append((("pending", pc.PENDING), header, draw(key_lines(pending=True))))
    if draw(st.booleans()):
        name = draw(st.sampled_from(["cloudinit", "CloudInit", "fleecing"]))
        sections.append((("special", f"special:{name}"), f"[special:{name}]", draw(key_lines())))
    for name in draw(st.lists(snap_name, max_size=3, unique=True)):
        sections.append((("snapshot", name), f"[{name}]", draw(key_lines())))
    for ident, header, (body, values) in draw(st.permutations(sections)):
        lines += [draw(blank) for _ in range(draw(st.integers(0, 2)))] + [header] + body
        model[ident] = values
    text = nl.join(lines) + (nl if lines and draw(st.booleans()) else "")
    return Built(text, nl, model)


def deletes(raw: str | None) -> set[str]:
    return {k.lstrip("!") for k in (raw or "").split(",") if k}


def section_texts(conf: pc.VmConfig) -> dict[tuple[str, str], str]:
    """Every section but main and [PENDING], as its exact text; the blank lines that end it
    apart (they set the next section apart, and go with a [PENDING] that goes after them)."""
    out = {}
    for s in conf.sections:
        if s.kind not in ("main", "pending"):
            lines = conf.lines[s.start:s.end]
            while lines and is_blank(lines[-1]):
                lines = lines[:-1]
            out[(s.kind, s.name)] = "".join(lines)
    return out


def changed_lines(old: str, new: str, nl: str) -> list[str]:
    """The lines an edit removed or added (their text without line ending). A missing final line
    ending counts as there: the edit that appends after such a line adds it."""
    def split(t: str) -> list[str]:
        return [ln.rstrip("\r\n") for ln in re.split(r"(?<=\n)", t if not t or t.endswith("\n") else t + nl) if ln]
    return [ln[2:] for ln in difflib.ndiff(split(old), split(new)) if ln[:2] in ("- ", "+ ")]


def other_lines_changed(old: str, new: str, nl: str, key: str) -> list[str]:
    """`changed_lines` but for `key`'s own lines, which an edit of `key` may rewrite, drop or move
    (a key written twice is written once). Compared without them, a line diff cannot mistake an
    untouched line for a moved one ("agent:0, agent: 0, amd-sev:0, agent:0" set to "agent: 0")."""
    def others(text: str) -> str:
        return "".join(ln for ln in re.split(r"(?<=\n)", text) if not ln.startswith(f"{key}:"))
    return changed_lines(others(old), others(new), nl)


def is_blank(line: str) -> bool:
    return re.fullmatch(r"\s*", line, re.ASCII) is not None


@settings(max_examples=150, deadline=None)
@given(configs())
def test_every_config_of_the_grammar_reads_as_its_model_and_round_trips(built):
    conf = pc.parse_config(built.text, "gen.conf")  # strict: nothing here is refused by qemu-server
    assert "".join(conf.lines) == built.text and conf.text == built.text
    got = {(s.kind, s.name): s.values for s in conf.sections}
    assert got == built.model
    assert conf.pending_deletes == deletes(built.model.get(("pending", pc.PENDING), {}).get("delete"))


def without_delete(values: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if k != "delete"}


@settings(max_examples=150, deadline=None)
@given(configs(), st.sampled_from(KEYS).flatmap(
    lambda k: st.tuples(st.just(k), hostpci_value if k.startswith("hostpci") else value)), st.booleans())
# a key written three times around another: the line diff once took amd-sev's line for a moved one
@example(Built("#\nagent:0\nagent: 0\namd-sev:0\nagent:0", "\n", {("main", ""): {"agent": "0", "amd-sev": "0"}}),
         ("agent", "0"), False)
def test_setting_a_key_changes_only_that_keys_lines(built, key_value, running):
    key, new_value = key_value
    conf = pc.parse_config(built.text, "gen.conf")
    new = pc.set_option(conf, key, new_value, running=running)
    after = pc.parse_config(new, "gen.conf")
    assert section_texts(after) == section_texts(conf)
    pending = conf.section(pc.PENDING)
    # the [PENDING] header and blank lines change only when the section comes (running, none yet)
    # or may go (it held the key, and nothing else perhaps)
    section_may_change = pending is None if running else (key in conf.pending or key in conf.pending_deletes)
    for line in other_lines_changed(built.text, new, built.nl, key):
        assert ((line.startswith("delete:") and key in conf.pending_deletes)
                or (section_may_change and (line.strip().upper() == "[PENDING]" or is_blank(line)))), line
    main, pend = dict(conf.main.values), without_delete(conf.pending)
    if running:
        pend[key] = new_value
    else:
        main[key] = new_value
        pend.pop(key, None)
    assert after.main.values == main and without_delete(after.pending) == pend
    assert after.pending_deletes == conf.pending_deletes - {key}  # update_vm_api: remove_from_pending_delete
    assert after.effective(key) == new_value


@settings(max_examples=150, deadline=None)
@given(configs(), st.sampled_from(KEYS), st.booleans())
def test_deleting_a_key_changes_only_that_keys_lines(built, key, running):
    conf = pc.parse_config(built.text, "gen.conf")
    new = pc.delete_option(conf, key, running=running)
    after = pc.parse_config(new, "gen.conf")
    assert section_texts(after) == section_texts(conf)
    for line in other_lines_changed(built.text, new, built.nl, key):
        assert line.startswith("delete:") or line.strip().upper() == "[PENDING]" or is_blank(line), line
    assert after.effective(key) is None
    if running:
        assert after.main.values == conf.main.values
        wanted = conf.pending_deletes | {key} if key in conf.main.values else conf.pending_deletes
    else:
        assert after.main.values == {k: v for k, v in conf.main.values.items() if k != key}
        wanted = conf.pending_deletes - {key}
    assert after.pending_deletes == wanted
    assert without_delete(after.pending) == {k: v for k, v in without_delete(conf.pending).items() if k != key}


@settings(max_examples=150, deadline=None)
@given(configs())
def test_applying_pending_changes_only_pending_lines_and_the_keys_they_name(built):
    conf = pc.parse_config(built.text, "gen.conf")
    new = pc.apply_pending(conf)
    after = pc.parse_config(new, "gen.conf")
    assert section_texts(after) == section_texts(conf) and after.section(pc.PENDING) is None
    pend = conf.section(pc.PENDING)
    touched = set(conf.pending) | conf.pending_deletes
    pending_lines = {ln.rstrip("\r\n") for ln in conf.lines[pend.start:pend.end]} if pend else set()
    for line in changed_lines(built.text, new, built.nl):
        assert line in pending_lines or is_blank(line) or line.split(":")[0] in touched, line
    main = {k: v for k, v in conf.main.values.items() if k not in conf.pending_deletes}
    main.update({k: v for k, v in conf.pending.items() if k != "delete"})
    assert after.main.values == main
