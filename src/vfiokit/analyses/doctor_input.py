"""What `vfiokit doctor`'s checks read and return: the input (topology, facts, boot state), a
`Finding`, and the small helpers every check uses. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vfiokit.analyses.boot_state import BootState
from vfiokit.model import PciAddress, Topology

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
GROUPS = ("firmware", "kernel", "modules", "devices", "vms")

#: The modules Proxmox's guide loads for passthrough (pve-docs qm-pci-passthrough.adoc).
VFIO_MODULES = ("vfio", "vfio_iommu_type1", "vfio_pci")

#: AMD GPUs that do not come back from a VM without vendor-reset's device-specific reset: the
#: device table of gnif/vendor-reset `src/device-db.h` (Polaris 10/11/12, Vega 10/20, Navi 10/12/14,
#: Arcturus), vendor 0x1002.
VENDOR_RESET_IDS: dict[str, tuple[int, ...]] = {
    "Polaris 10": (0x67C0, 0x67C1, 0x67C2, 0x67C4, 0x67C7, 0x67D0, 0x67DF, 0x67C8, 0x67C9, 0x67CA,
                   0x67CC, 0x67CF, 0x6FDF),
    "Polaris 11": (0x67E0, 0x67E3, 0x67E8, 0x67EB, 0x67EF, 0x67FF, 0x67E1, 0x67E7, 0x67E9),
    "Polaris 12": (0x6980, 0x6981, 0x6985, 0x6986, 0x6987, 0x6995, 0x6997, 0x699F),
    "Vega 10": (0x6860, 0x6861, 0x6862, 0x6863, 0x6864, 0x6867, 0x6868, 0x6869, 0x686A, 0x686B,
                0x686C, 0x686D, 0x686E, 0x686F, 0x687F),
    "Vega 20": (0x66A0, 0x66A1, 0x66A2, 0x66A3, 0x66A4, 0x66A7, 0x66AF, 0x738C),
    "Navi 10": (0x7310, 0x7312, 0x7318, 0x7319, 0x731A, 0x731B, 0x731E, 0x731F, 0x1681),
    "Navi 12": (0x7360, 0x7362),
    "Navi 14": (0x7340, 0x7341, 0x7347, 0x734F),
}
ATI_VENDOR = 0x1002


@dataclass(frozen=True)
class BootFacts:
    """The `boot status` facts: which file decides, its refresh command, configured vs running."""

    deciding_file: str
    refresh: str
    state: BootState


@dataclass(frozen=True)
class DoctorInput:
    top: Topology
    #: `sources.doctor_facts` layout; None when not gathered (a snapshot older than doctor).
    facts: Mapping[str, Any] | None
    boot: BootFacts | None = None
    #: `doctor VMID` / `doctor DEVICE`: narrow the VMs and devices looked at (a slot, 01:00, names
    #: every function of the card).
    vmid: str | None = None
    devices: tuple[PciAddress, ...] = ()

    def fact(self, key: str) -> Any:
        return (self.facts or {}).get(key)

    @property
    def vms(self) -> dict[str, dict[str, str]]:
        """The VMs looked at, with their options (every VM with a passed device, or the one named)."""
        allvms = (self.fact("pve") or {}).get("vms") or {}
        if self.vmid is not None:
            return {self.vmid: allvms.get(self.vmid, {})}
        return {k: v for k, v in allvms.items() if hostpci_options(v)}


@dataclass(frozen=True)
class Finding:
    id: str
    status: str
    #: What `render/doctor.py` words: a code and its facts.
    code: str
    evidence: str
    fix: str | None = None
    #: "" for the host, else the device address or "VM 100".
    subject: str = ""
    facts: tuple[tuple[str, str], ...] = field(default=())

    @property
    def group(self) -> str:
        return self.id.split(".")[0]

    @property
    def fact(self) -> dict[str, str]:
        return dict(self.facts)


def finding(id_: str, status: str, code: str, evidence: str, fix: str | None = None, subject: str = "",
            **facts: object) -> Finding:
    return Finding(id_, status, code, evidence, fix, subject, tuple((k, str(v)) for k, v in facts.items()))


def log_line(d: DoctorInput, *needles: str) -> str | None:
    """The first kept kernel-log line holding one of `needles`."""
    return next((ln for ln in d.top.host.dmesg or () if any(n in ln for n in needles)), None)


def log_source(d: DoctorInput) -> str:
    return f"kernel log ({d.top.host.dmesg_source or 'source unknown'})"


# -- firmware ----------------------------------------------------------------------------------


def hostpci_options(opts: Mapping[str, str]) -> dict[str, str]:
    """A VM's `hostpciN` options (its passthrough entries)."""
    return {k: v for k, v in opts.items() if k.startswith("hostpci")}
