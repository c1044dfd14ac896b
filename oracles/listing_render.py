"""Write a topology out the way each tool people paste from writes it (tests only: the product
itself writes the article's format, render/groups.py groups_seed).

Each writer follows the tool's own code: the article's script (seed text), its flat variant
(`printf 'IOMMU Group %s ' $n; lspci -nns`), the "IOMMU Group N:" + TAB variant, ls-iommu
(pkg/iommu/genoutput.go: `IOMMU Group %3d:` + pciaddr, subclass name, [cccc], name, [vvvv:dddd],
optional revision; `-k` adds TAB `Subsystem:`/`Kernel driver in use:` lines), r15ch13's iommu.sh
(`Group N:\\t[vvvv:dddd] [R] ` + `printf "%s %-40s %s"` of lspci -mm slot, class, device name),
`find /sys/kernel/iommu_groups/ -type l`, `tree /sys/kernel/iommu_groups`, pvesh's box table
(PVE::CLI::Formatter), a markdown post, and lspci's own `-vmm` (IOMMUGroup field), `-v` (Flags
line) and `-mm` (quoted fields, under the script's headers).
"""

from __future__ import annotations

import random

from vfiokit.model import Device, Topology
from vfiokit.pciids import PciIds, lspci_line
from vfiokit.render.groups import groups_seed

NO_IDS = PciIds(None)


def _members(top: Topology, number: int) -> list[Device]:
    return [top.by_address[a] for a in sorted(top.by_group[number].members, key=str)]


def _numbers(top: Topology, lexical: bool = False) -> list[int]:
    nums = [g.number for g in top.groups or ()]
    return sorted(nums, key=str) if lexical else nums


def _domain(top: Topology) -> bool:
    return any(d.address.domain for d in top.devices)


def seed(top: Topology) -> str:
    return groups_seed(top, NO_IDS)


def flat(top: Topology) -> str:
    """`for d in /sys/kernel/iommu_groups/*/devices/*; do printf 'IOMMU Group %s ' ...; lspci -nns`:
    the shell's glob gives lexical group order."""
    return "".join(f"IOMMU Group {n} {lspci_line(d, NO_IDS, numeric=True, domain=_domain(top))}\n"
                   for n in _numbers(top, lexical=True) for d in _members(top, n))


def colon_tab(top: Topology) -> str:
    out = []
    for n in _numbers(top):
        out.append(f"IOMMU Group {n}:\n")
        out.extend(f"\t{lspci_line(d, NO_IDS, numeric=True, domain=True)}\n" for d in _members(top, n))
    return "".join(out)


def ls_iommu(top: Topology) -> str:
    out = []
    for n in _numbers(top):
        for d in _members(top, n):
            rev = f" (rev {d.revision:02x})" if d.revision else ""
            names = " ".join(filter(None, (d.vendor_name, d.device_name)))
            out.append(f"IOMMU Group {n:3d}: {d.address} {d.class_name} [{d.class_id:04x}] {names} "
                       f"[{d.ids}]{rev}\n")
            if d.subsystem_vendor_id is not None:
                out.append(f"\tSubsystem: {names} [{d.subsystem_vendor_id:04x}:{d.subsystem_device_id:04x}]\n")
            if d.driver:
                out.append(f"\tKernel driver in use: {d.driver}\n")
    return "".join(out)


def r15ch13(top: Topology) -> str:
    out = []
    for n in _numbers(top):
        for i, d in enumerate(_members(top, n)):
            lead = f"Group {n}:\t" if i == 0 else "\t\t"
            reset = " [R] " if d.has_reset else "     "
            slot = str(d.address) if _domain(top) else d.address.short
            out.append(f"{lead}[{d.ids}]{reset}{slot} {d.class_name:<40} {d.device_name}\n")
            if d.class_id == 0x0C03:
                out.append("USB:\t\t[1d6b:0002]\t\t Bus 001 Device 001                       "
                           "Linux Foundation 2.0 root hub\n")
    return "".join(out)


def find(top: Topology, seed_: int = 0) -> str:
    lines = [f"/sys/kernel/iommu_groups/{n}/devices/{d.address}\n"
             for n in _numbers(top) for d in _members(top, n)]
    random.Random(seed_).shuffle(lines)  # find prints in directory order, which is no order
    return "# find /sys/kernel/iommu_groups/ -type l\n" + "".join(lines)


def tree(top: Topology) -> str:
    out = ["/sys/kernel/iommu_groups/\n"]
    nums = _numbers(top, lexical=True)
    for gi, n in enumerate(nums):
        last_group = gi == len(nums) - 1
        out.append(f"{'└' if last_group else '├'}── {n}\n")
        pad = "    " if last_group else "│   "
        out.append(f"{pad}├── devices\n")
        members = _members(top, n)
        for i, d in enumerate(members):
            branch = "└" if i == len(members) - 1 else "├"
            out.append(f"{pad}│   {branch}── {d.address} -> ../../../../devices/pci0000:00/{d.address}\n")
        out.append(f"{pad}├── reserved_regions\n{pad}└── type\n")
    return "".join(out)


def pvesh(top: Topology) -> str:
    cols = ["class", "device", "id", "iommugroup", "vendor", "device_name", "vendor_name"]
    rows = []
    for d in sorted(top.devices, key=lambda d: (d.class_code or 0, str(d.address))):
        rows.append([f"0x{d.class_code:06x}", f"0x{d.device_id:04x}", str(d.address),
                     str(d.iommu_group if d.iommu_group is not None else -1), f"0x{d.vendor_id:04x}",
                     d.device_name or "", d.vendor_name or ""])
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]

    def row(cells: list[str]) -> str:
        return "│ " + " │ ".join(c.rjust(w) if c.lstrip("-").isdigit() else c.ljust(w)
                                  for c, w in zip(cells, widths, strict=True)) + " │\n"

    def rule(left: str, mid: str, right: str, fill: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + right + "\n"

    out = [rule("┌", "┬", "┐", "─"), row(cols), rule("╞", "╪", "╡", "═")]
    for i, r in enumerate(rows):
        out.append(row(r))
        out.append(rule("├", "┼", "┤", "─") if i < len(rows) - 1 else rule("└", "┴", "┘", "─"))
    return "root@pve:~# pvesh get /nodes/pve/hardware/pci --pci-class-blacklist \"\"\n" + "".join(out)


def markdown(top: Topology) -> str:
    out = ["## My IOMMU groups\n", "\n", "```\n"]
    for n in _numbers(top):
        out.append(f"### Group {n} ###\n")
        out.extend(f"- `{lspci_line(d, NO_IDS, numeric=True, domain=_domain(top))}`\n"
                   for d in _members(top, n))
    out.append("```\n")
    return "".join(out)


def lspci_vmm(top: Topology) -> str:
    """`lspci -vmm -nn -D` (lspci.c show_machine): one record per device, `IOMMUGroup:` included;
    `Rev:` and `ProgIf:` only when not zero."""
    out = []
    for d in top.devices:
        out += [f"Slot:\t{d.address}\n", f"Class:\t{d.class_name} [{d.class_id:04x}]\n",
                f"Vendor:\t{d.vendor_name} [{d.vendor_id:04x}]\n", f"Device:\t{d.device_name} [{d.device_id:04x}]\n"]
        if d.revision:
            out.append(f"Rev:\t{d.revision:02x}\n")
        if d.class_code & 0xFF:
            out.append(f"ProgIf:\t{d.class_code & 0xFF:02x}\n")
        out += [f"IOMMUGroup:\t{d.iommu_group}\n", "\n"]
    return "".join(out)


def lspci_verbose(top: Topology) -> str:
    """`lspci -v -nn` (lspci.c show_verbose): the device line, then its `Flags:` with the group."""
    out = []
    for d in top.devices:
        out += [f"{lspci_line(d, NO_IDS, numeric=True, domain=_domain(top))}\n",
                f"\tFlags: bus master, fast devsel, latency 0, IRQ 16, IOMMU group {d.iommu_group}\n", "\n"]
    return "".join(out)


def lspci_mm(top: Topology) -> str:
    """The article's script with `lspci -mm -nn` instead of `lspci -nn`: quoted fields (lspci.c
    show_machine), `-rXX` only when the revision is not zero."""
    out = []
    for n in _numbers(top):
        out.append(f"IOMMU Group {n}\n")
        for d in _members(top, n):
            rev = f" -r{d.revision:02x}" if d.revision else ""
            slot = str(d.address) if _domain(top) else d.address.short
            out.append(f'\t{slot} "{d.class_name} [{d.class_id:04x}]" "{d.vendor_name} [{d.vendor_id:04x}]" '
                       f'"{d.device_name} [{d.device_id:04x}]"{rev} "" ""\n')
    return "".join(out)


#: name -> (writer, what the format carries: "ids", "class", "names")
FORMATS = {
    "seed": (seed, {"class_name", "names"}),
    "flat": (flat, {"ids", "class", "class_name", "names", "revision"}),
    "colon_tab": (colon_tab, {"ids", "class", "class_name", "names", "revision"}),
    "ls_iommu": (ls_iommu, {"ids", "class", "class_name", "names", "revision", "driver"}),
    "r15ch13": (r15ch13, {"ids", "class_name", "reset"}),
    "find": (find, set()),
    "tree": (tree, set()),
    "pvesh": (pvesh, {"ids", "full_class"}),
    "markdown": (markdown, {"ids", "class", "class_name", "names", "revision"}),
    "lspci_vmm": (lspci_vmm, {"ids", "full_class", "class_name", "names", "revision"}),
    "lspci_verbose": (lspci_verbose, {"ids", "class", "class_name", "names", "revision"}),
    "lspci_mm": (lspci_mm, {"ids", "class", "class_name", "names", "revision"}),
}
