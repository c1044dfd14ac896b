"""Live binding through sysfs: hand a PCI function to vfio-pci now, or give it back.

These are writes to the running kernel, not to files: they cannot go through the atomic writer
(a sysfs attribute cannot be replaced by a rename), so this one small module knows their order and
their errors. The order, for each function:

1. `modprobe vfio-pci` once, unless `/sys/bus/pci/drivers/vfio-pci` exists (the driver is there);
2. `driver_override` <- `vfio-pci`: from then on only vfio-pci may claim the device
   (drivers/pci/pci-driver.c `pci_match_device`: with `driver_override` set, no other driver's
   id table matches it);
3. `driver/unbind` <- the address: the current driver lets go (drivers/base/bus.c `unbind_store`);
4. `/sys/bus/pci/drivers_probe` <- the address: the kernel probes again and vfio-pci takes it
   (drivers/base/bus.c `drivers_probe_store`).

Giving back is the same with `driver_override` cleared (writing a newline empties it), the
function unbound from vfio-pci and probed again: its own driver claims it as at boot.

Each failing write is one line naming the device, the file and what the errno means there.
"""

from __future__ import annotations

import errno
import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vfiokit import rootfs
from vfiokit.edits.atomic import run_argv as writer_run
from vfiokit.errors import ExitCode, VfiokitError

VFIO = "vfio-pci"
DEVICES = "/sys/bus/pci/devices"
PROBE = "/sys/bus/pci/drivers_probe"

#: Called after each write with (host path, value): the tests' stand-in for the kernel's reaction.
AfterWrite = Callable[[str, str], None]
#: Runs one command; returns (exit code, last line of its error output).
Runner = Callable[[Sequence[str]], tuple[int, str]]


@dataclass(frozen=True)
class Step:
    """One action: a command (`argv`) or a value written to a sysfs attribute (`path`, host view)."""

    address: str
    path: str = ""
    value: str = ""
    argv: tuple[str, ...] = ()

    def shell(self) -> str:
        """The same action as a shell line (the plan shown, and `bind --script`)."""
        if self.argv:
            return shlex.join(self.argv)
        if self.value == "\n":
            return f"echo > {shlex.quote(self.path)}"
        return f"echo {shlex.quote(self.value)} > {shlex.quote(self.path)}"


@dataclass(frozen=True)
class Function:
    """A function to move: its address (`0000:04:00.0`) and the driver it has now (None: none)."""

    address: str
    driver: str | None


def vfio_loaded(root: str) -> bool:
    return os.path.isdir(rootfs.resolve_under(root, "/sys/bus/pci/drivers/" + VFIO))


def bind_steps(functions: Sequence[Function], load_module: bool) -> list[Step]:
    """The ordered actions that move each function not on vfio-pci yet to vfio-pci."""
    todo = [f for f in functions if f.driver != VFIO]
    steps = [Step("", argv=("modprobe", VFIO))] if todo and load_module else []
    for f in todo:
        dev = f"{DEVICES}/{f.address}"
        steps.append(Step(f.address, f"{dev}/driver_override", VFIO))
        if f.driver is not None:
            steps.append(Step(f.address, f"{dev}/driver/unbind", f.address))
        steps.append(Step(f.address, PROBE, f.address))
    return steps


def unbind_steps(functions: Sequence[Function], overridden: Sequence[str]) -> list[Step]:
    """The ordered actions that give each function back: those on vfio-pci, or whose
    `driver_override` (`overridden`) still names it."""
    steps = []
    for f in functions:
        if f.driver != VFIO and f.address not in overridden:
            continue
        dev = f"{DEVICES}/{f.address}"
        steps.append(Step(f.address, f"{dev}/driver_override", "\n"))
        if f.driver is not None:
            steps.append(Step(f.address, f"{dev}/driver/unbind", f.address))
        steps.append(Step(f.address, PROBE, f.address))
    return steps


def _why(step: Step, e: OSError) -> VfiokitError:
    name = os.path.basename(step.path)
    if isinstance(e, PermissionError):
        return VfiokitError(f"{step.address}: cannot write {step.path}: permission denied (run as root)",
                            ExitCode.PERMISSION, device=step.address)
    meaning = {
        errno.EBUSY: "the driver will not let go (in use: a mounted disk, an open device?)"
        if name == "unbind" else "busy: a driver holds the device",
        errno.ENODEV: "the device is not on that driver any more"
        if name == "unbind" else "the kernel has no such device now (removed?)",
        errno.ENOENT: "no such sysfs file (no driver bound, or a kernel without driver_override, "
        "before 3.16)",
        errno.EINVAL: "the kernel refused the value",
    }.get(e.errno or 0, e.strerror or str(e))
    return VfiokitError(f"{step.address}: writing {step.path} failed: {meaning}", ExitCode.WRITE_FAILED,
                        device=step.address)


def _write(root: str, step: Step) -> None:
    real = rootfs.resolve_under(root, step.path)
    # O_WRONLY without O_CREAT or O_TRUNC: a sysfs attribute exists or the kernel lacks it.
    fd = os.open(real, os.O_WRONLY)
    try:
        os.write(fd, step.value.encode())
    finally:
        os.close(fd)


def driver_of(root: str, address: str) -> str | None:
    """The driver bound to `address` now (its `driver` link's name), None for none."""
    link = rootfs.resolve_under(root, f"{DEVICES}/{address}") + "/driver"
    try:
        return os.path.basename(os.readlink(link))
    except OSError:
        return None


def run(root: str, steps: Sequence[Step], runner: Runner | None = None,
        after_write: AfterWrite | None = None) -> None:
    """Do `steps` in order; stop at the first failure with one line (exit WRITE_FAILED or
    PERMISSION). What was done before stays done and is named by the caller's check."""
    for s in steps:
        if s.argv:
            code, why = (runner or writer_run)(s.argv)
            if code != 0:
                raise VfiokitError(f"{shlex.join(s.argv)} failed (exit {code}{': ' + why if why else ''}); "
                                   "nothing was changed", ExitCode.WRITE_FAILED)
            continue
        try:
            _write(root, s)
        except OSError as e:
            raise _why(s, e) from None
        if after_write is not None:
            after_write(s.path, s.value)
