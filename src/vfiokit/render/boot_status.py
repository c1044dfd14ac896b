"""`vfiokit boot status` rendered: the boot setup, the configured and running command lines, what is pending.

The types come from the boot source and planner (`BootSetup`, `Configured`); only their values are read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vfiokit.model import HostInfo

if TYPE_CHECKING:
    from vfiokit.analyses.boot_state import BootState
    from vfiokit.analyses.override_effect import OverrideEffect
    from vfiokit.formats.boot_setup import BootSetup, Configured


def boot_status_json(setup: BootSetup, conf: Configured, state: BootState, deciding_file: str) -> dict[str, Any]:
    """The `boot` object of `boot status --json` (`deciding_file` as shown: below the root)."""
    return {
        "path": setup.path, "label": setup.label, "firmware": setup.firmware,
        "distribution": setup.distro, "evidence": list(setup.evidence),
        "deciding_file": deciding_file, "deciding_line": conf.line,
        "overridden_files": list(conf.overridden), "configured": conf.value,
        "not_editable_because": conf.refusal,
        "grub_cmdline_linux": conf.linux, "grub_cmdline_linux_note": conf.linux_note,
        "running": setup.running, "refresh_command": list(setup.refresh),
        "pending_refresh": None if state.refresh_adds is None else
        {"add": list(state.refresh_adds),
         "remove": None if state.refresh_removes is None else list(state.refresh_removes)},
        "pending_reboot": None if state.reboot_adds is None else
        {"add": list(state.reboot_adds),
         "remove": None if state.reboot_removes is None else list(state.reboot_removes)},
    }


def boot_status_lines(setup: BootSetup, conf: Configured, state: BootState, deciding_file: str) -> list[str]:
    """The text of `boot status`, one aligned line per fact."""
    where = f"{deciding_file}" + (f" line {conf.line}" if conf.line else " (not set there yet)")
    var = "" if setup.uses_kernel_cmdline else "GRUB_CMDLINE_LINUX_DEFAULT in "
    lines = [f"boot path:    {setup.label}" + (f" on {setup.distro}" if setup.distro else ""),
             *(f"              {e}" for e in setup.evidence),
             f"decided by:   {var}{where}"]
    if conf.overridden:
        lines.append(f"              (overrides {', '.join(conf.overridden)})")
    if conf.refusal:
        lines.append(f"              vfiokit will not edit it: {conf.refusal}")
    lines.append(f"configured:   {conf.value.strip() or '(empty)'}")
    if not setup.uses_kernel_cmdline:
        linux = (conf.linux.strip() or "(empty)") if conf.linux is not None else conf.linux_note
        lines.append(f"also (GRUB_CMDLINE_LINUX): {linux}")
    running = setup.running if setup.running is not None else "(unknown: no /proc/cmdline)"
    lines.append(f"running:      {running}")
    if state.refresh_adds or state.refresh_removes:
        lines.append(f"pending '{' '.join(setup.refresh)}': "
                     + " ".join([*(f"+{p}" for p in state.refresh_adds or ()),
                                 *(f"-{p}" for p in state.refresh_removes or ())]))
    if state.reboot_adds or state.reboot_removes:
        lines.append("pending reboot: " + " ".join([*(f"+{p}" for p in state.reboot_adds or ()),
                                                    *(f"-{p}" for p in state.reboot_removes or ())]))
    elif state.reboot_adds is not None:
        lines.append("pending reboot: nothing (the running kernel has every configured parameter)")
    if state.reboot_adds is not None and state.reboot_removes is None:
        lines.append("              (what the next boot drops is unknown: part of the configuration "
                     "is built by shell code)")
    return lines


def override_effect_lines(e: OverrideEffect) -> list[str]:
    """`boot acs-override`'s before/after note."""
    return [f"today:  {e.groups_now} IOMMU groups, {e.shared_now} shared by several devices",
            f"with pcie_acs_override={e.modes}: {e.groups_then} groups, {e.shared_then} shared "
            "(vfiokit simulate shows which devices move)"]


def unknown_loader(reason: str, host: HostInfo, iommu_off: str | None) -> dict[str, object]:
    """`boot status` when vfiokit does not know the boot loader: what it still knows (the running
    command line, the IOMMU state), as data for --json and for `unknown_loader_lines`."""
    return {"loader": "unknown", "reason": reason, "running": host.cmdline,
            "iommu": {"on": iommu_off is None, "units": list(host.iommu_units or ()), "why_off": iommu_off}}


def unknown_loader_lines(data: dict[str, object]) -> list[str]:
    iommu = data["iommu"]
    assert isinstance(iommu, dict)
    state = f"on ({', '.join(iommu['units'])})" if iommu["on"] else f"off: {iommu['why_off']}"
    return [f"Boot loader: unknown ({data['reason']})",
            f"Running command line (/proc/cmdline): {data['running'] or 'unknown (not readable)'}",
            f"IOMMU: {state}",
            "vfiokit reads and edits GRUB and proxmox-boot-tool setups; edit this loader's command line "
            "by hand ('vfiokit boot add' would refuse)"]
