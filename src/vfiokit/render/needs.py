"""What a host need loses, and why, in words: the marks `groups` shows beside a device and the
sentences `check`, `bind` and `boot` build from them.

Apart from `render/reasons.py` (a verdict's reasons) so that `groups`, which shows needs but
judges nothing, does not import the verdict's analysis (`analyses/passthrough.py`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from vfiokit.analyses.host_needs import PLATFORM_CLASSES, HostNeed
from vfiokit.model import Device, Topology

_LOSS = {"display": "the display", "network": "the network", "disks": "the disks",
         "root": "the root file system", "boot": "the /boot file system", "efi": "the EFI system partition",
         "swap": "the swap", "usb-ports": "the USB ports", "sound": "the sound"}


def loss_text(loses: tuple[str, ...]) -> str:
    """What is lost, in words: ("vm", "100") -> "VM 100", ("display",) -> "the display"."""
    code, *of = loses
    if code == "vm":
        return f"VM {of[0]}"
    if code == "usb":
        return f"the USB {of[0]}"
    if code == "platform":
        return f"the {PLATFORM_CLASSES[int(of[0], 16)]}"
    return _LOSS[code]


def _arrow(chain: Any) -> str:
    return " -> ".join(chain)


def _storage_detail(f: dict[str, Any]) -> str:
    what = {"root": "/ (root)", "boot": "/boot", "efi": f"{f.get('use')} (EFI)",
            "swap": f"swap {f.get('use')}"}.get(f["role"], f.get("use"))
    return f"{what} is on {_arrow(f['chain'])}"


def _vm(f: dict[str, Any]) -> str:
    later = " (pending, at its next start)" if f["pending"] else ""
    if f.get("mdev"):
        later += " as a mediated device (Proxmox reserves nothing for it)"
    return f"VM {f['vmid']} uses it: {f['key']}: {f['value']}{later}"


_DETAIL = {
    "boot-vga": lambda f: "boot VGA: the firmware started the console on it",
    "storage": _storage_detail,
    "default-route": lambda f: f"default route ({f['family']}) via {_arrow(f['chain'])}",
    "interface": lambda f: f"interface {_arrow(f['chain'])} ({f['operstate'] or 'state unknown'})",
    "framebuffer": lambda f: f"console framebuffer {_arrow(f['chain'])}" + (f" ({f['name']})" if f["name"] else ""),
    "usb-input": lambda f: f"{f['name'] or f['what']}: {_arrow(f['chain'])}",
    "vm-mapping": _vm,
    "vm-hostpci": _vm,
    "driver": lambda f: f"driver {f['driver']}",
    "platform": lambda f: "a platform device the host cannot give away",
}


def need_loss(n: HostNeed) -> str:
    """What the host loses with `n`'s function: "the network", "VM 100"."""
    return loss_text(n.loses)


def need_detail(n: HostNeed) -> str:
    """Why, with the chain: "default route (ipv4) via vmbr0 -> enp6s0 -> 0000:06:00.0"."""
    return _DETAIL[n.code](n.fact)


def need_json(n: HostNeed) -> dict[str, Any]:
    """A need for `--json`: its words, and beside them its codes and facts."""
    return {"kind": n.kind, "critical": n.critical, "loss": need_loss(n), "detail": need_detail(n),
            "code": n.code, "loses": list(n.loses),
            "facts": {k: list(v) if isinstance(v, tuple) else v for k, v in n.facts}}


def need_brief(n: HostNeed) -> str:
    """A need's detail without what the parentheses already say (the address)."""
    if n.code == "boot-vga":
        return "boot VGA"
    return re.sub(r" -> [0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]\b", "", need_detail(n))


def host_marker(top: Topology) -> Callable[[Device], list[str]]:
    """For `groups`: a device's marks, e.g. "host needs: the network", "used by VM 100"."""
    from vfiokit.analyses.host_needs import needs

    used = needs(top.host_usage, top)

    def mark(dev: Device) -> list[str]:
        out: list[str] = []
        for n in used.get(dev.address, ()):
            text = f"used by {need_loss(n)}" if n.kind == "vm" else f"host needs {need_loss(n)}"
            if text not in out:
                out.append(text)
        return out

    return mark
