"""The kernel command-line editor: examples a user would type, then properties over random lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vfiokit.errors import BadInput
from vfiokit.formats import cmdline


@pytest.mark.parametrize(("text", "params", "want"), [
    ("quiet", ["intel_iommu=on", "iommu=pt"], "quiet intel_iommu=on iommu=pt"),
    ("", ["intel_iommu=on"], "intel_iommu=on"),
    ("quiet a=2 splash", ["a=1"], "quiet a=1 splash"),
    ("quiet vfio-pci.ids=10de:1b80", ["vfio_pci.ids=10de:10f0"], "quiet vfio-pci.ids=10de:1b80,10de:10f0"),
    ("vfio-pci.ids=10de:1b80", ["vfio-pci.ids=10DE:1B80"], "vfio-pci.ids=10de:1b80"),
    ("pcie_acs_override=downstream quiet", ["pcie_acs_override=multifunction"],
     "pcie_acs_override=downstream,multifunction quiet"),
    ("intel-iommu=on", ["intel_iommu=on"], "intel-iommu=on"),
    ("console=tty0 quiet", ["console=ttyS0,115200"], "console=tty0 console=ttyS0,115200 quiet"),
    ("quiet -- single", ["iommu=pt"], "quiet iommu=pt -- single"),
    ("  quiet\tsplash  ", ["nomodeset"], "  quiet\tsplash nomodeset  "),
    ('quiet dyndbg="file drivers/pci/* +p"', ["iommu=pt"], 'quiet dyndbg="file drivers/pci/* +p" iommu=pt'),
])
def test_add(text: str, params: list[str], want: str) -> None:
    assert cmdline.add(text, params) == want


@pytest.mark.parametrize(("text", "params", "want"), [
    ("quiet intel_iommu=on iommu=pt", ["intel_iommu"], "quiet iommu=pt"),
    ("quiet intel_iommu=on", ["intel_iommu=off"], "quiet intel_iommu=on"),
    ("intel_iommu=on quiet", ["intel-iommu=on"], "quiet"),
    ("quiet vfio-pci.ids=1:2,3:4", ["vfio_pci.ids=3:4"], "quiet vfio-pci.ids=1:2"),
    ("quiet vfio-pci.ids=1:2", ["vfio_pci.ids=1:2"], "quiet"),
    ("  quiet  splash ", ["quiet"], "  splash "),
    ("quiet -- iommu=pt", ["iommu"], "quiet -- iommu=pt"),
])
def test_remove(text: str, params: list[str], want: str) -> None:
    assert cmdline.remove(text, params) == want


@pytest.mark.parametrize("bad", ['a="b c"', "a=$(reboot)", "x`y`", "a b", "", "a=b\\c", "--"])
def test_a_parameter_vfiokit_cannot_write_is_named(bad: str) -> None:
    with pytest.raises(BadInput, match=r"kernel parameter|separates"):
        cmdline.check_param(bad)


# Random command lines: parameters such as real ones (names with dots, dashes, underscores,
# values with commas and colons), separated by random blanks.
_name = st.from_regex(r"[a-z][a-z0-9_\-]{0,6}(\.[a-z][a-z0-9_\-]{0,5})?", fullmatch=True)
_value = st.from_regex(r"[a-z0-9:,.]{1,8}", fullmatch=True)
_param = st.one_of(_name, st.builds(lambda n, v: f"{n}={v}", _name, _value))
_blank = st.sampled_from([" ", "  ", "\t", " \t "])


@st.composite
def _line(draw: st.DrawFn) -> str:
    params = draw(st.lists(_param, max_size=8))
    seps = [draw(_blank) for _ in params]
    lead = draw(st.sampled_from(["", " "]))
    trail = draw(st.sampled_from(["", " ", "\n"]))
    return lead + "".join(p + s for p, s in zip(params, seps, strict=True)).rstrip(" \t") + trail


def _untouched(before: str, after: str, named: list[str]) -> None:
    keys = {cmdline.key_of(p) for p in named}
    assert ([t for t in cmdline.tokens(before) if cmdline.key_of(t) not in keys]
            == [t for t in cmdline.tokens(after) if cmdline.key_of(t) not in keys])


@given(_line(), st.lists(_param, min_size=1, max_size=3))
def test_add_then_remove_restores_the_original(text: str, params: list[str]) -> None:
    keys = [cmdline.key_of(t) for t in cmdline.tokens(text)]
    fresh = list({cmdline.key_of(p): p for p in params if cmdline.key_of(p) not in keys}.values())
    assert cmdline.remove(cmdline.add(text, fresh), fresh) == text


@given(_line(), st.lists(_param, min_size=1, max_size=3))
def test_add_is_idempotent(text: str, params: list[str]) -> None:
    once = cmdline.add(text, params)
    assert cmdline.add(once, params) == once
    assert all(cmdline.has(once, p) for p in params[-1:])


@given(_line(), st.lists(_param, min_size=1, max_size=3), st.booleans())
def test_parameters_not_named_are_never_touched_or_reordered(text: str, params: list[str],
                                                             adding: bool) -> None:
    after = cmdline.add(text, params) if adding else cmdline.remove(text, params)
    _untouched(text, after, params)


@given(_line(), st.lists(_param, min_size=1, max_size=3))
def test_remove_leaves_none_of_the_removed_keys(text: str, params: list[str]) -> None:
    bare = [p.partition("=")[0] for p in params]
    after = cmdline.remove(text, bare)
    assert not {cmdline.key_of(t) for t in cmdline.tokens(after)} & {cmdline.key_of(p) for p in bare}


_id = st.from_regex(r"[0-9a-f]{4}:[0-9a-f]{4}", fullmatch=True)


@given(_line(), st.lists(_id, min_size=1, max_size=3, unique=True), _id, st.sampled_from(["-", "_"]))
def test_a_list_value_takes_an_item_and_gives_it_back(text: str, ids: list[str], new: str, dash: str) -> None:
    start = cmdline.add(text, [f"vfio-pci.ids={','.join(ids)}"])
    if new in ids:
        return
    grown = cmdline.add(start, [f"vfio{dash}pci.ids={new}"])
    assert [t for t in cmdline.tokens(grown) if cmdline.key_of(t) == "vfio_pci.ids"] == [
        f"vfio-pci.ids={','.join([*ids, new])}"]
    assert cmdline.remove(grown, [f"vfio{dash}pci.ids={new}"]) == start
