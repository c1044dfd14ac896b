"""`vfiokit bind` / `unbind` in words: the plan's header lines and what the host loses now."""

from __future__ import annotations

from vfiokit.analyses.host_needs import HostNeed
from vfiokit.analyses.vfio_binding import DriverStatus
from vfiokit.model import Device
from vfiokit.render.needs import need_detail, need_loss


def move_line(dev: Device, to: str | None, group: int | None) -> str:
    """`04:00.0 nouveau -> vfio-pci (IOMMU group 15)`."""
    where = f" (IOMMU group {group})" if group is not None else ""
    return f"{dev.address} {dev.driver or '(no driver)'} -> {to or '(its own driver, probed again)'}{where}"


def loss_lines(losses: list[HostNeed]) -> list[str]:
    """One line per thing the host stops using now."""
    out = []
    for n in losses:
        link = "its link drops" if "(down)" not in need_detail(n) else "its interface goes (its link is down)"
        now = {"console": "the screen goes black", "network": link,
               "storage": "its disks vanish", "input": "it stops typing"}.get(n.kind, "the host stops using it")
        out.append(f"now: {n.address.short}: the host loses {need_loss(n)}: {now} ({need_detail(n)})")
    return out


def status_lines(rows: list[DriverStatus]) -> list[str]:
    """`bind --status`: one line per function; `*` marks a driver that changes at the next boot."""
    out = [f"  {'device':<13} {'now':<15} {'next boot':<15} why"]
    for r in rows:
        mark = "*" if r.differs else " "
        out.append(f"{mark} {r.device.address.short:<13} {r.now or '(none)':<15} "
                   f"{r.next_boot or '(its own)':<15} {r.why}")
    if any(r.differs for r in rows):
        out.append("* the driver changes at the next boot")
    return out


def next_boot_mark(row: DriverStatus | None) -> list[str]:
    """The `groups` mark of a device whose driver at the next boot is not the one it has now
    (vfio-pci or not: `DriverStatus.differs`), as `bind --status` marks it with `*`."""
    if row is None or not row.differs:
        return []
    return [f"next boot: {row.next_boot or 'its own driver'}"]
