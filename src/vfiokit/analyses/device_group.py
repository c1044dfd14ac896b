"""drivers/iommu/iommu.c `pci_device_group`: the group a PCI device joins when the IOMMU driver
hands it over, given the groups handed out so far. Pure.

It walks the device's DMA aliases (`get_pci_alias_or_group`), then up the bridges until ACS
protects against peer-to-peer DMA, then looks for a group among the aliases
(`get_pci_alias_group`) and the functions of a slot that do not isolate
(`get_pci_function_alias_group`). `analyses/grouping.py` holds the state it reads (`GroupingState`:
the ACS and alias rules) and names this walk in `KERNEL_RULES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vfiokit.model import Device, PciAddress

if TYPE_CHECKING:
    from vfiokit.analyses.grouping import GroupingState


def pci_device_group(m: GroupingState, dev: Device, group_of: dict[PciAddress, int]) -> int | None:
    """pci_device_group: the group `dev` joins, or None for a new one."""
    # get_pci_alias_or_group, over pci_for_each_dma_alias: the device, then the bridges that
    # take over its requester ID.
    # (Each field is read once into a local: this runs twice per device in `simulate`, and a
    # named tuple's field costs a descriptor call each time it is read.)
    found = group_of.get(dev.address)
    if found is not None:
        return found
    pdev = dev
    for alias in m.tree.rid_bridges(dev):
        pdev = alias
        found = group_of.get(alias.address)
        if found is not None:
            return found
    # Up from the point of minimum granularity to where ACS protects against peer-to-peer DMA.
    bridge = m.parent(pdev)
    while bridge is not None:
        if m.path_ok(bridge):
            break
        pdev = bridge
        found = group_of.get(pdev.address)
        if found is not None:
            return found
        bridge = m.parent(pdev)
    seen: set[int] = set()
    found = _alias_group(m, pdev, seen, group_of)
    if found is None:
        found = _function_alias_group(m, pdev, seen, group_of)
    return found


def _alias_group(m: GroupingState, pdev: Device, seen: set[int], group_of: dict[PciAddress, int]) -> int | None:
    """get_pci_alias_group: the group of a device aliasing `pdev` (or aliased by it), if any;
    `seen` is the kernel's devfn bitmap that stops alias loops."""
    a = pdev.address
    devfn = a.devfn
    if devfn in seen:
        return None
    seen.add(devfn)
    found = group_of.get(a)
    if found is not None:
        return found
    key = (a.domain, a.bus)
    if key not in m.tree.buses_with_aliases:
        return None
    for tmp in m.tree.bus[key]:
        if tmp is pdev or not m.are_dma_aliases(pdev, tmp):
            continue
        found = _alias_group(m, tmp, seen, group_of)
        if found is None:
            found = _function_alias_group(m, tmp, seen, group_of)
        if found is not None:
            return found
    return None


def _function_alias_group(m: GroupingState, pdev: Device, seen: set[int],
                          group_of: dict[PciAddress, int]) -> int | None:
    """get_pci_function_alias_group: functions of a slot that do not isolate share a group."""
    if not m.multifunction(pdev) or m.acs_enabled(pdev):
        return None
    a = pdev.address
    for tmp in m.tree.slot[(a.domain, a.bus, a.slot)]:
        if tmp is pdev or m.acs_enabled(tmp):
            continue
        found = _alias_group(m, tmp, seen, group_of)
        if found is not None:
            return found
    return None
