"""The reasons of a `check` verdict in words: one sentence per reason code and its facts.

The codes (`analyses/passthrough.py`) and their facts are what `--json` carries beside this text.
"""

from __future__ import annotations

from vfiokit.analyses.passthrough import Reason


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
    "boot-gpu": lambda f: (f"{f['device']} is the boot GPU: vfio-pci cannot reserve its memory while the "
                           "host framebuffer holds it ('BAR 0: can't reserve'); make another GPU primary in "
                           "the firmware"),
    "same-card": lambda f: (f"{f['device']} is another function of the same card: pass it along "
                            f"(all functions of {f['slot']})"),
    "leaves-host": _leaves,
    "all-ones": lambda f: (f"{f['device']} reads as all ones (rev ff): it is powered off or fell off the "
                           "bus, often after a failed reset; a VM given it gets a dead device (power-cycle "
                           "the host, or remove it and rescan the bus)"),
}


def reason_text(r: Reason) -> str:
    """One sentence for `r`, e.g. "06:00.0 leaves the host with 07:00.0, and with it the network: ..."."""
    return _TEXT[r.code](r.fact)
