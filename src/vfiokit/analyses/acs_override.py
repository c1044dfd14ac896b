"""The `pcie_acs_override=` option: what a user may write, what a kernel command line holds, and
whether the running kernel honours it. Pure, no I/O.

The option is not in mainline Linux. It comes from a patch (Alex Williamson, 2013) that Proxmox VE
carries in its kernel (pve-kernel patches/kernel/*-pci-Enable-overrides-for-missing-ACS-capabilities-*
.patch); a stock kernel lists it among the unknown parameters it hands to user space and ignores it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vfiokit.errors import BadInput
from vfiokit.model import HostInfo

#: The patch's NUM_ACS_IDS is 16, but `max_acs_id >= NUM_ACS_IDS - 1` refuses the 16th:
#: "Out of PCIe ACS override slots".
MAX_IDS = 15
PARAM = "pcie_acs_override"

_ID_RE = re.compile(r"^id:([0-9a-fA-F]{1,4}):([0-9a-fA-F]{1,4})$")


@dataclass(frozen=True)
class AcsOverride:
    """The options of `pcie_acs_override=`; all off means "none"."""

    #: Root ports and switch downstream ports without an ACS capability count as isolating.
    downstream: bool = False
    #: Multifunction endpoints, legacy endpoints, upstream ports and RC integrated endpoints
    #: without an ACS capability count as isolating.
    multifunction: bool = False
    #: (vendor, device) pairs: those devices, if PCIe without an ACS capability, count as isolating.
    ids: tuple[tuple[int, int], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.downstream or self.multifunction or self.ids)

    def __str__(self) -> str:
        flags = (("downstream", self.downstream), ("multifunction", self.multifunction))
        parts = [name for name, on in flags if on]
        parts += [f"id:{v:04x}:{d:04x}" for v, d in self.ids]
        return ",".join(parts) or "none"

    def covers(self, other: AcsOverride) -> bool:
        """Everything `other` overrides, this overrides too (so it can only split groups further)."""
        return ((self.downstream or not other.downstream)
                and (self.multifunction or not other.multifunction)
                and set(other.ids) <= set(self.ids))

    def union(self, other: AcsOverride) -> AcsOverride:
        ids = tuple(dict.fromkeys((*self.ids, *other.ids)))
        return AcsOverride(self.downstream or other.downstream,
                           self.multifunction or other.multifunction, ids)


NONE = AcsOverride()


def parse_override(text: str) -> AcsOverride:
    """Parse what a user writes after `pcie_acs_override=` (the prefix itself is accepted too):
    `downstream`, `multifunction`, `id:vvvv:dddd` (hex, at most 15), comma-separated, or `none`.

    Stricter than the kernel, which matches prefixes and skips what it cannot read: a typo here
    is an error, not a silently ignored option.
    """
    raw = text.strip()
    if raw.startswith(PARAM + "="):
        raw = raw[len(PARAM) + 1:]
    if not raw:
        raise BadInput("empty ACS override: give downstream, multifunction, id:vvvv:dddd (comma-separated) "
                       "or none")
    tokens = [t.strip() for t in raw.split(",")]
    if "none" in tokens:
        if len(tokens) > 1:
            raise BadInput(f"ACS override '{text}': 'none' cannot be combined with other options")
        return NONE
    downstream = multifunction = False
    ids: list[tuple[int, int]] = []
    for tok in tokens:
        if tok == "downstream":
            downstream = True
        elif tok == "multifunction":
            multifunction = True
        elif (m := _ID_RE.match(tok)) is not None:
            pair = (int(m[1], 16), int(m[2], 16))
            if pair not in ids:
                ids.append(pair)
        else:
            raise BadInput(f"ACS override '{text}': '{tok}' is not an option (expected downstream, "
                           "multifunction, id:vvvv:dddd with hex ids, or none)")
    if len(ids) > MAX_IDS:
        raise BadInput(f"ACS override '{text}': {len(ids)} ids given, the kernel patch keeps at most "
                       f"{MAX_IDS} (it ignores the rest with 'Out of PCIe ACS override slots')")
    return AcsOverride(downstream, multifunction, tuple(ids))


def _kernel_parse(value: str, ids: list[tuple[int, int]]) -> tuple[bool, bool]:
    """pcie_acs_override_setup: prefix matches, ids of up to 4 hex digits, errors skipped."""
    downstream = multifunction = False
    for tok in value.split(","):
        downstream |= tok.startswith("downstream")
        multifunction |= tok.startswith("multifunction")
        if tok.startswith("id:") and len(ids) < MAX_IDS:
            m = re.match(r"id:([0-9a-fA-F]{1,4})[^:]*:([0-9a-fA-F]{1,4})", tok)
            if m:
                ids.append((int(m[1], 16), int(m[2], 16)))
    return downstream, multifunction


def override_in_cmdline(cmdline: str | None) -> AcsOverride | None:
    """The override a kernel command line asks for, read the way the patch reads it (every
    occurrence adds to the last: early_param runs once per occurrence); None when absent."""
    if not cmdline:
        return None
    values = [p.split("=", 1)[1] for p in cmdline.split() if p.startswith(PARAM + "=")]
    if not values:
        return None
    ds = mf = False
    ids: list[tuple[int, int]] = []
    for v in values:
        d, m = _kernel_parse(v, ids)
        ds, mf = ds or d, mf or m
    return AcsOverride(ds, mf, tuple(dict.fromkeys(ids)))


@dataclass(frozen=True)
class OverrideSupport:
    """Whether the running kernel honours `pcie_acs_override=`, and how we know."""

    #: True: patched (the log says so, or it is a Proxmox VE kernel); False: the log shows the
    #: kernel ignored the parameter; None: cannot tell.
    patched: bool | None
    evidence: str


def kernel_support(host: HostInfo) -> OverrideSupport:
    """Read the kernel log lines the sysfs source kept (HostInfo.dmesg) and the kernel release."""
    for line in host.dmesg or ():
        if "PCIe ACS overrides enabled" in line:
            return OverrideSupport(True, f"the kernel log says: {line.strip()}")
        if "Unknown kernel command line parameters" in line and PARAM in line:
            return OverrideSupport(False, "the kernel log lists pcie_acs_override among unknown parameters: "
                                   "this kernel does not have the patch and ignores it")
    release = host.kernel_release or ""
    if release.endswith("-pve") or "-pve-" in release:
        return OverrideSupport(True, f"kernel {release} is a Proxmox VE kernel, which carries the patch")
    if host.dmesg is None and not release:
        return OverrideSupport(None, "the kernel log was not readable, and the kernel release is unknown")
    if host.dmesg is None:
        return OverrideSupport(None, "the kernel log was not readable, and the kernel "
                               f"{release} is not a Proxmox VE kernel")
    return OverrideSupport(None, f"kernel {release or '(unknown release)'}: nothing in the kernel log tells "
                           "whether it carries the patch")


def effective_override(host: HostInfo) -> AcsOverride:
    """The override the current groups were formed with: the command line's, unless the kernel
    is known to ignore it."""
    asked = override_in_cmdline(host.cmdline)
    if asked is None or kernel_support(host).patched is False:
        return NONE
    return asked
