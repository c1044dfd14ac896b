"""`groups --format markdown`: the groups as a Markdown table folded in a `<details>` block.

Sized for a forum post or a GitHub issue: one row per device, the `lspci -nn` text people expect,
and nothing a reader must scroll past (the block is closed until clicked). `--listing` reads it
back (sources/listing.py, MARKDOWN_ROW), so a pasted table gives the same groups.
"""

from __future__ import annotations

from vfiokit import __version__
from vfiokit.model import Device, Topology
from vfiokit.pciids import PciIds, lspci_line
from vfiokit.render.groups import Marker, flags, shows_domains

_FLAG_WORDS = {"boot_vga": "boot VGA", "sriov_vf": "SR-IOV VF"}


def _cell(text: str) -> str:
    """A table cell: a `|` would end it, a newline would end the row."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _row(dev: Device, group: str, ids: PciIds, domain: bool, mark: Marker) -> str:
    known = (dev.class_name, dev.class_id, dev.vendor_name, dev.device_name, dev.vendor_id)
    text = lspci_line(dev, ids, numeric=True).split(" ", 1)[1] if any(v is not None for v in known) else ""
    # "—": no driver bound; "?": the source does not say.
    driver = "—" if dev.driver == "" else "?" if dev.driver is None else f"`{dev.driver}`"
    notes = [_FLAG_WORDS[f] for f in flags(dev) if f in _FLAG_WORDS] + mark(dev)
    address = str(dev.address) if domain else dev.address.short
    return f"| {group} | {address} | {_cell(text)} | {driver} | {_cell('; '.join(notes))} |"


def groups_markdown(top: Topology, ids: PciIds, marker: Marker | None = None) -> str:
    mark = marker or (lambda d: [])
    domain = shows_domains(top)
    groups = top.groups or ()
    host = top.host
    where = ", ".join(filter(None, (host.hostname, top.source)))
    lines = ["<details>",
             f"<summary>IOMMU groups of {where or 'this host'}: {len(groups)} groups, {len(top.devices)} PCI "
             f"functions (vfiokit {__version__})</summary>", ""]
    # As a shell session: `--listing` reads what follows `uname -r` and `cat /proc/cmdline` back.
    shell = (["$ uname -r", host.kernel_release] if host.kernel_release else []) + \
            (["$ cat /proc/cmdline", host.cmdline] if host.cmdline else [])
    if shell:
        lines += ["```", *shell, "```"]
    lines += ["", "| Group | Address | Device (lspci -nn) | Driver | Notes |", "|---:|---|---|---|---|"]
    for g in groups:
        lines.extend(_row(top.by_address[a], str(g.number), ids, domain, mark) for a in g.members
                     if a in top.by_address)
    grouped = {a for g in groups for a in g.members}
    for dev in top.devices:
        if dev.address not in grouped:
            label = "?" if dev.address in top.group_unknown else "none"
            lines.append(_row(dev, label, ids, domain, mark))
    lines += ["", "</details>", ""]
    return "\n".join(lines)
