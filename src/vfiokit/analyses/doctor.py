"""`vfiokit doctor`: every precondition of PCI passthrough, one small check each. Pure.

A check is a function over `DoctorInput` (the topology, the facts `sources.doctor_facts` gathered,
the boot state) returning `Finding`s: an id (`kernel.irq_remap`), a status (ok, warn, fail, or
skip when the fact it needs was not readable), a code and facts `render/doctor.py` words, the
evidence (the file or log line read) and the fix (a vfiokit command where one exists). `CHECKS`
is the list, in the order a user walks the chain: firmware -> kernel -> modules -> devices -> VMs.
Adding a check is adding a function and a line there.
"""
from __future__ import annotations

from collections.abc import Callable

from vfiokit.analyses.doctor_devices import (
    boot_gpu,
    device_driver,
    device_framebuffer,
    device_group,
    device_reset,
    gpu_audio,
)
from vfiokit.analyses.doctor_host import (
    acpi_iommu,
    acs_ignored,
    cmdline_pending,
    cpu_virt,
    hypervisor,
    intel_flag,
    iommu_active,
    iommu_off_param,
    iommu_pt,
    irq_remap,
    modules_at_boot,
    modules_initramfs,
    modules_loaded,
    virqfd,
)
from vfiokit.analyses.doctor_input import (
    FAIL,
    OK,
    WARN,
    DoctorInput,
    Finding,
)
from vfiokit.analyses.doctor_vms import (
    vm_balloon,
    vm_devices,
    vm_pcie,
    vm_primary_gpu,
    vm_shared,
)

#: The checks, in the order the chain is walked (firmware -> kernel -> modules -> devices -> VMs).
CHECKS: tuple[Callable[[DoctorInput], list[Finding]], ...] = (
    hypervisor, cpu_virt, acpi_iommu,
    iommu_off_param, intel_flag, iommu_active, irq_remap, iommu_pt, cmdline_pending, acs_ignored,
    modules_loaded, modules_at_boot, modules_initramfs, virqfd,
    boot_gpu, device_group, device_driver, device_reset, device_framebuffer, gpu_audio,
    vm_pcie, vm_primary_gpu, vm_balloon, vm_shared, vm_devices,
)


def run(d: DoctorInput) -> list[Finding]:
    """Every check's findings, in `CHECKS` order."""
    return [f for check in CHECKS for f in check(d)]


def worst(findings: list[Finding]) -> str:
    statuses = {f.status for f in findings}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else OK
