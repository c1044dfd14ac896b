"""The reasons of a `check` verdict in words: one sentence per reason code and its facts, what a
host need loses and why, the verdict's headline and its notes.

The codes (`analyses/passthrough.py`, `analyses/host_needs.py`) and their facts are what `--json`
carries beside this text.
"""

from __future__ import annotations

from typing import Any

from vfiokit.analyses.passthrough import CRITICAL, LEAVES, Level, Reason, Verdict
from vfiokit.render.needs import loss_text, need_brief, need_detail, need_loss

# -- the reasons of a verdict ------------------------------------------------------------------

def _need(f: dict[str, str]) -> str:
    if f["need"] == "driver":
        return f"{f['device']} leaves the host with {f['with']}: the host's {f['detail']} uses it now ({f['loss']})"
    return f"{f['device']} leaves the host with {f['with']}, and with it {f['loss']}: {f['detail']}"


def _leaves(f: dict[str, str]) -> str:
    if f["driver"]:
        return f"{f['device']} leaves the host with {f['with']}: the host's driver {f['driver']} uses it now"
    return f"{f['device']} leaves the host with {f['with']} (nothing on the host is known to use it)"


_TEXT = {
    "bridge": lambda f: f"{f['device']} is a bridge: Proxmox leaves it bound to the host",
    "target-need": lambda f: (f"{f['device']} {'is' if f['need'] == 'platform' else 'itself carries'} "
                             f"{f['loss']}: {f['detail']}"),
    "host-need": _need,
    "target-in-vm": lambda f: f"{f['device']} is already given to a VM: {f['detail']}",
    "vm-need": lambda f: (f"{f['device']} is given to another VM ({f['detail']}): that VM and this one "
                          "cannot run at the same time"),
    "target-bound": lambda f: (f"{f['device']} is bound to {f['driver']} now: the host uses it until the VM "
                               "starts and Proxmox moves it to vfio-pci"),
    "no-reset": lambda f: (f"{f['device']} has no reset method (sysfs reset/reset_method): the VM may see "
                           "it in a stale state after a restart"),
    "boot-gpu": lambda f: (f"{f['device']} is the boot GPU: the host's console framebuffer holds its memory, "
                           "so vfio-pci cannot reserve it ('BAR 0: can't reserve'). Either make another GPU "
                           "(the CPU's own, or a second card) primary in the firmware setup, or release the "
                           "console: 'vfiokit boot add initcall_blacklist=sysfb_init' (kernel 5.15 and later; "
                           "before: video=efifb:off) and run the host headless over SSH, which costs the local "
                           "screen after the boot loader: a rescue then needs SSH or a serial console"),
    "same-card": lambda f: (f"{f['device']} is another function of the same card: pass it along "
                            f"(all functions of {f['slot']})"),
    "leaves-host": _leaves,
    "all-ones": lambda f: (f"{f['device']} reads as all ones (rev ff): it is powered off or fell off the "
                           "bus, often after a failed reset; a VM given it gets a dead device (power-cycle "
                           "the host, or remove it and rescan the bus)"),
}


def reason_text(r: Reason) -> str:
    """One sentence for `r`, e.g. "06:00.0 leaves the host with 07:00.0, and with it the network: ..."."""
    f = r.fact
    if r.need is not None:
        f = {**f, "loss": need_loss(r.need), "detail": need_detail(r.need)}
    return _TEXT[r.code](f)


# -- the verdict in one sentence, and its notes ------------------------------------------------

def _and(parts: list[str] | tuple[str, ...]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _what(m: Any) -> str:
    dev = m.device
    return dev.address.short + (f" ({dev.driver})" if dev.driver else " (no driver)" if dev.driver == "" else "")


def headline(v: Verdict) -> str:
    """The verdict in one sentence, e.g. "passing 07:00.0 takes the display (04:00.0, boot VGA) and
    the network (06:00.0, ...) from the host"."""
    names = f"{v.targets[0].short[:5]} (all functions)" if v.whole_slot else _and([a.short for a in v.targets])
    one = v.whole_slot or len(v.targets) == 1
    group = ("IOMMU group " if len(v.groups) == 1 else "IOMMU groups ") + _and([str(g) for g in v.groups])
    if v.level == Level.ALONE:
        return (f"{names} {'is' if one else 'are'} alone in {group}: passing {'it' if one else 'them'} takes "
                "nothing else from the host")
    if v.level == Level.HARMLESS:
        return (f"{names} {'shares' if one else 'share'} {group} only with bridges, which Proxmox leaves to "
                "the host: harmless")
    major, minor = [], []
    for loses, ms in v.losses:
        briefs = []
        for m in ms:
            # The loss's most serious reason for this member: a fact that makes it critical first.
            first = sorted((n for n in m.needs if n.loses == loses), key=lambda n: not n.critical)[0]
            briefs.append(f"{m.address.short}, {need_brief(first)}")
        critical = any(n.critical for m in ms for n in m.needs if n.loses == loses)
        (major if critical else minor).append(f"{loss_text(loses)} ({'; '.join(briefs)})")
    others = [_what(m) for m in v.members
              if m.role in (LEAVES, CRITICAL) and not any(n.kind != "vm" for n in m.needs)]
    minor += others
    if not major:
        major, minor = minor, []
    text = f"passing {names} takes {_and(major)} from the host ({group})"
    if minor:
        text += f"; also {_and(minor)}"
    return text


def verdict_notes(v: Verdict) -> list[str]:
    """What the judgement could not see: a source without host-usage facts."""
    if not v.judged:
        return []
    return [f"this source has no host-usage facts (mounts, routes, console): only {_and(v.judged)} were "
            "judged; run `vfiokit check` on the host itself, or take a snapshot there with this vfiokit, "
            "to see more"]
