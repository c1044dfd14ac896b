"""Boot one topology under QEMU (TCG, emulated IOMMU) and bring back what the guest reported.

The guest writes its results to a second serial port (ttyS1, a file on the host) so that kernel
messages on the console (ttyS0) can never interleave with them.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.topologies import Topology

QEMU = "qemu-system-x86_64"
#: One boot takes 15-40 s under TCG on a 2-core machine; past this something is wrong.
TIMEOUT = 240
MEMORY_MB = 768

#: no_timer_check: under TCG on a busy host the kernel's IO-APIC timer test (io_apic.c
#: timer_irq_works) can miss its ticks and, with interrupt remapping, panics ("timer doesn't work
#: through Interrupt-remapped IO-APIC"); the timer does work, the check is only too impatient.
KERNEL_ARGS = ("console=ttyS0", "quiet", "panic=-1", "no_timer_check")

#: The one failure a boot is retried for (once, and logged): the early IO-APIC timer check
#: (arch/x86/kernel/apic/io_apic.c check_timer) panicking under a slow TCG clock despite
#: no_timer_check. Every other failure fails the run.
TIMER_PANIC = "timer doesn't work through Interrupt-remapped IO-APIC"

TRUTH, STATE = "=== vfiokit-lab truth ===", "=== vfiokit-lab state ==="
SNAPSHOT, END = "=== vfiokit-lab snapshot ===", "=== vfiokit-lab end rc="


@dataclass
class Result:
    name: str
    seconds: float
    truth: str | None = None  # the guest's busybox listing: "GROUP ADDRESS" lines
    snapshot: str | None = None  # `vfiokit snapshot -o -` as printed in the guest
    state: str | None = None  # what the host uses, by busybox: /proc/mounts, ip route, bridge ports
    error: str | None = None
    console: str = ""
    retried: str | None = None  # why the first boot was thrown away (TIMER_PANIC), if it was

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_truth(text: str) -> dict[str, list[str]]:
    """The busybox listing as {group: sorted members}."""
    groups: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip():
            number, address = line.split()
            groups.setdefault(number, []).append(address)
    return {n: sorted(m) for n, m in groups.items()}


def command(topo: Topology, kernel: Path, initrd: Path, disks: list[Path], console: Path,
            out: Path) -> list[str]:
    cmd = [QEMU, "-accel", "tcg", "-cpu", "max", "-m", str(MEMORY_MB), "-smp", "1",
           "-display", "none", "-no-reboot", "-nodefaults",
           "-serial", f"file:{console}", "-serial", f"file:{out}",
           "-machine", "q35,kernel-irqchip=split"]
    for i, disk in enumerate(disks):
        cmd += ["-drive", f"if=none,id=d{i},file={disk},format=raw"]
    for dev in topo.qemu_devices:
        cmd += ["-device", dev]
    cmd += ["-kernel", str(kernel), "-initrd", str(initrd),
            "-append", " ".join([*KERNEL_ARGS, *topo.kernel_args])]
    return cmd


def _parse(text: str) -> tuple[str, str, str, int]:
    """The guest's report: truth, state, snapshot, and the snapshot command's exit status."""
    text = text.replace("\r\n", "\n")
    parts = []
    for marker in (TRUTH, STATE, SNAPSHOT, END):
        head, sep, text = text.partition(marker)
        if not sep:
            raise ValueError("the guest's report is incomplete")
        parts.append(head.removeprefix("\n"))
    return parts[1], parts[2], parts[3], int(text.split("=", 1)[0])


def boot(topo: Topology, kernel: Path, initrd: Path, workdir: Path, timeout: float = TIMEOUT,
         log: Callable[[str], None] | None = None) -> Result:
    """Boot `topo`, a second time only after the early timer panic (TIMER_PANIC, told to `log`);
    never raises for a guest failure (the Result says what went wrong)."""
    result = _boot_once(topo, kernel, initrd, workdir, timeout)
    if result.error and TIMER_PANIC in result.console:
        first = f"{topo.name}: the kernel panicked early ({TIMER_PANIC}); booting it once more"
        if log:
            log(first)
        result = _boot_once(topo, kernel, initrd, workdir, timeout)
        result.retried = first
    return result


def _boot_once(topo: Topology, kernel: Path, initrd: Path, workdir: Path, timeout: float) -> Result:
    start = time.monotonic()
    console, out = workdir / f"{topo.name}.console", workdir / f"{topo.name}.out"
    disks = []
    for i in range(topo.machine.disks):
        disk = workdir / f"{topo.name}.disk{i}.img"
        with open(disk, "wb") as f:
            f.truncate(32 << 20)
        disks.append(disk)
    cmd = command(topo, kernel, initrd, disks, console, out)
    result = Result(topo.name, 0.0)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            result.error = f"qemu exited with {r.returncode}: {r.stderr.strip()[-500:]}"
    except subprocess.TimeoutExpired:
        result.error = f"no power-off within {timeout:.0f} s"
    result.seconds = time.monotonic() - start
    result.console = console.read_text(errors="replace") if console.exists() else ""
    for disk in disks:
        disk.unlink()
    if result.error:
        return result
    try:
        truth, state, snapshot, rc = _parse(out.read_text(errors="replace") if out.exists() else "")
        if rc != 0:
            raise ValueError(f"vfiokit snapshot exited with {rc} in the guest")
        json.loads(snapshot)
    except ValueError as e:
        result.error = f"{e} (console: {console})"
        return result
    result.truth, result.state, result.snapshot = truth, state, snapshot
    return result
