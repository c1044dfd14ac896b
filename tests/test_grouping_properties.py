"""Properties of the prediction on random machines (hypothesis): an override only ever splits
groups, numbers follow the kernel's add order, and `--alone` answers are true."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vfiokit.analyses.alone import make_alone
from vfiokit.analyses.grouping import (
    add_order,
    override_applies,
    parse_override,
    predict_groups,
    predict_partition,
)
from vfiokit.analyses.simulation import DeviceChange, simulate, with_groups
from vfiokit.model import (
    PCIE_DOWNSTREAM_PORT,
    PCIE_ENDPOINT,
    PCIE_ROOT_PORT,
    PCIE_TO_PCI_BRIDGE,
    PCIE_UPSTREAM_PORT,
    Topology,
)
from vfiokit.sources.capture import build_topology
from vfiokit.sources.synthetic import Spec, capture_of

ACS_CHOICES = st.sampled_from([None, (0x1F, 0x1D), (0x1F, 0x00)])
OVERRIDES = ["downstream", "multifunction", "downstream,multifunction", "id:1b21:2824", "id:10ec:8168"]


@st.composite
def machines(draw) -> Topology:
    specs: list[Spec] = []
    next_bus = [1]

    def bus() -> int:
        next_bus[0] += 1
        return next_bus[0] - 1

    def endpoints(parent: str, b: int, conventional: bool = False) -> None:
        functions = draw(st.integers(1, 3))
        for fn in range(functions):
            specs.append(Spec(f"{b:02x}:00.{fn}", 0x10EC, draw(st.sampled_from([0x8168, 0x8125])), 0x020000,
                              parent=parent, pcie_type=None if conventional else PCIE_ENDPOINT,
                              multifunction=functions > 1, acs=None if conventional else draw(ACS_CHOICES)))

    for slot in range(1, draw(st.integers(1, 4)) + 1):
        rp = f"00:{slot:02x}.0"
        b = bus()
        specs.append(Spec(rp, 0x1022, 0x1483, 0x060400, pcie_type=PCIE_ROOT_PORT, acs=draw(ACS_CHOICES),
                          secondary_bus=b))
        kind = draw(st.sampled_from(["endpoint", "switch", "pci-bridge"]))
        if kind == "endpoint":
            endpoints(rp, b)
        elif kind == "pci-bridge":
            br = f"{b:02x}:00.0"
            nb = bus()
            specs.append(Spec(br, 0x104C, 0x8240, 0x060400, parent=rp, pcie_type=PCIE_TO_PCI_BRIDGE,
                              secondary_bus=nb))
            endpoints(br, nb, conventional=True)
        else:
            up = f"{b:02x}:00.0"
            inner = bus()
            specs.append(Spec(up, 0x1B21, 0x2825, 0x060400, parent=rp, pcie_type=PCIE_UPSTREAM_PORT,
                              secondary_bus=inner))
            for port in range(draw(st.integers(1, 3))):
                dp = f"{inner:02x}:{port:02x}.0"
                nb = bus()
                specs.append(Spec(dp, 0x1B21, 0x2824, 0x060400, parent=up, pcie_type=PCIE_DOWNSTREAM_PORT,
                                  acs=draw(ACS_CHOICES), secondary_bus=nb))
                endpoints(dp, nb)
    specs.append(Spec("00:1f.0", 0x1022, 0x790E, 0x060100, multifunction=True))
    specs.append(Spec("00:1f.3", 0x1022, 0x790B, 0x0C0500, multifunction=True))
    # Read from a running kernel: groups present (so CTRL is what the kernel left: ACS switched
    # off stays off), and the kernel's groups are what the model gives without override.
    for i, s in enumerate(specs):
        s.group = i
    top = build_topology(capture_of(specs), "random machine")
    return with_groups(top, predict_groups(top, None))


def refines(fine: dict, coarse: dict) -> bool:
    """Every group of `fine` lies inside one group of `coarse`."""
    inside: dict[int, int] = {}
    return all(inside.setdefault(n, coarse[a]) == coarse[a] for a, n in fine.items())


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(machines(), st.sampled_from(OVERRIDES))
def test_an_override_only_ever_splits_groups(top, override):
    natural = predict_partition(top, None)
    split = predict_partition(top, parse_override(override))
    assert set(natural) == set(split) == {d.address for d in top.devices}
    assert refines(split, natural)
    assert refines(predict_partition(top, parse_override("downstream,multifunction,id:1b21:2824")),
                   predict_partition(top, parse_override("downstream")))


@SETTINGS
@given(machines(), st.sampled_from([None, *OVERRIDES]))
def test_group_numbers_follow_the_order_devices_are_added(top, override):
    part = predict_partition(top, None if override is None else parse_override(override))
    firsts: list[int] = []
    for dev in add_order(top):
        if part[dev.address] not in firsts:
            firsts.append(part[dev.address])
    assert firsts == list(range(len(firsts)))


@SETTINGS
@given(machines(), st.data())
def test_alone_answers_for_a_whole_card_are_true_and_name_every_group_they_change(top, data):
    dev = data.draw(st.sampled_from(top.devices))
    card = tuple(sorted(d.address for d in top.devices if d.address.same_slot(dev.address)))
    advice = make_alone(top, card)
    if advice.override is None or advice.already_alone:
        return
    before = predict_partition(top, parse_override("none"))
    after = predict_partition(top, advice.override)
    theirs = {after[a] for a in card}
    assert not [a for a, n in after.items() if n in theirs and a not in card]

    def mates(part, a):
        return {b for b, n in part.items() if n == part[a]}

    changed = {a for a in after if a not in card and mates(after, a) != mates(before, a)}
    assert set(advice.also_affected) == changed


@SETTINGS
@given(machines(), st.data())
def test_alone_answers_are_true(top, data):
    dev = data.draw(st.sampled_from(top.devices))
    advice = make_alone(top, dev.address)
    if advice.override is not None:
        part = predict_partition(top, advice.override)
        assert [a for a, n in part.items() if n == part[dev.address]] == [dev.address]
    else:
        assert advice.blockers
        # nothing at all isolates it: not even every option at once with every id around
        everything = parse_override("downstream,multifunction,id:1b21:2824,id:1b21:2825,id:1022:1483,"
                                    "id:10ec:8168,id:10ec:8125,id:104c:8240")
        part = predict_partition(top, everything)
        assert sum(1 for n in part.values() if n == part[dev.address]) > 1


def _members(groups) -> dict:
    """Each device's group-mates (itself included) and the group's number."""
    return {a: (frozenset(g.members), g.number) for g in groups or () for a in g.members}


@SETTINGS
@given(machines(), st.sampled_from([None, *OVERRIDES]), st.sampled_from(["none", *OVERRIDES]))
def test_simulate_reports_exactly_what_its_groups_say(top, booted, asked):
    """The changes, splits, merges and cut hardware groups of `simulate`, worked out here from their
    definitions over the groups it shows (today's, predicted, and the natural ones without an
    override), on hosts booted with or without an override."""
    if booted is not None:
        top = replace(with_groups(top, predict_groups(top, parse_override(booted))),
                      host=top.host._replace(cmdline=f"pcie_acs_override={booted}"))
    sim = simulate(top, parse_override(asked))
    now, then = _members(sim.current), _members(sim.predicted)
    expected = []
    for a in sorted(now.keys() | then.keys()):
        n_m, n = now.get(a, (frozenset({a}), None))
        t_m, t = then.get(a, (frozenset({a}), None))
        if n_m != t_m or n != t:
            expected.append(DeviceChange(a, n, t, tuple(sorted(n_m - t_m)), tuple(sorted(t_m - n_m)),
                                         len(n_m) == 1, len(t_m) == 1))
    assert list(sim.changes) == expected

    def pieces(group, groups):
        """The groups of `groups` that `group`'s devices are in, by their first device in address order."""
        out = []
        for a in group.members:
            for g in groups:
                if a in g.members and g not in out:
                    out.append(g)
        return tuple(out)

    assert list(sim.splits) == [(g.number, pieces(g, sim.predicted)) for g in sim.current
                                if len(pieces(g, sim.predicted)) > 1]
    assert list(sim.merges) == [(g, tuple(sorted(p.number for p in pieces(g, sim.current))))
                                for g in sim.predicted if len(pieces(g, sim.current)) > 1]
    natural = sim.current if sim.baseline.empty else predict_groups(top, None)
    for shown, groups, override in ((sim.assumed, sim.predicted, sim.override),
                                    (sim.assumed_today, sim.current if booted else (), sim.baseline)):
        assert [(x.devices, x.pieces) for x in shown] == [
            (g.members, pieces(g, groups)) for g in natural if len(pieces(g, groups)) > 1]
        for x in shown:
            assert x.because == tuple((a, why) for a in x.devices
                                      if (why := override_applies(top.by_address[a], override)) is not None)
