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
    "boot-gpu": lambda f: (f"{f['device']} is the boot GPU: the host's console framebuffer holds its memory, "
                           "so vfio-pci cannot reserve it ('BAR 0: can't reserve'). Either make another GPU "
                           "(the CPU's own, or a second card) primary in the firmware setup, or release the "
                           "console: 'vfiokit boot add initcall_blacklist=sysfb_init' (kernel 5.15 and later; "
                           "before: video=efifb:off) and run the host headless over SSH, which costs the local "
                           "screen after the boot loader: a rescue then needs SSH or a serial console"),
    "same-card": lambda f: (f"{f['device']} is another function of the same card: pass it along "
                            f"(all functions of {f['slot']})"),
    "leaves-host": _leaves,
}


def reason_text(r: Reason) -> str:
    """One sentence for `r`, e.g. "06:00.0 leaves the host with 07:00.0, and with it the network: ..."."""
    return _TEXT[r.code](r.fact)
