"""What a Proxmox VE node says about its VMs, read locally: configs, mappings, running state.

Files are read below a root folder (`--root`), like every source: `etc/pve/qemu-server/*.conf` (the
local node's VMs, a link into pmxcfs' `nodes/<node>/`), `etc/pve/mapping/pci.cfg` (cluster PCI
mappings, pve-guest-common PVE/Mapping/PCI.pm), `etc/hostname` (PVE::INotify::nodename). Whether a
VM runs is asked of `qm status`, Proxmox's own answer.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vfiokit import rootfs
from vfiokit.errors import BadInput, DeviceNotFound, ExitCode, VfiokitError, child_env
from vfiokit.formats import pve_config as pc
from vfiokit.formats import pve_mapping


def read_pve_file(path: Path, root: str = "/") -> str:
    """The text of `path` (below `root`, every link resolved there by `rootfs`) exactly as on
    disk (a CR kept), so its SHA1 is the digest qemu-server compares and the diff shows the real
    bytes."""
    try:
        real = rootfs.resolve_under(root, rootfs.host_path(root, str(path)))
        return rootfs.read_file(real).decode("utf-8")
    except PermissionError:
        raise VfiokitError(f"{path}: permission denied (run as root on the Proxmox node)",
                           ExitCode.PERMISSION) from None
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text") from None
    except FileNotFoundError:
        raise BadInput(f"{path}: missing (a Proxmox VE node has it)") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror or e})") from None


@dataclass
class LocalPve:
    """This Proxmox node, read below `root`; `qm` is the command that answers for VMs."""

    root: str = "/"
    qm: str = "qm"

    @property
    def _pve(self) -> Path:
        return Path(self.root) / "etc/pve"

    def nodename(self) -> str:
        text = read_pve_file(Path(self.root) / "etc/hostname", self.root).strip()
        return text.split(".")[0]

    def config_path(self, vmid: str) -> Path:
        return self._pve / "qemu-server" / f"{vmid}.conf"

    def config(self, vmid: str) -> pc.VmConfig:
        path = self.config_path(vmid)
        if not path.is_file():
            if not (self._pve / "qemu-server").is_dir():
                raise VfiokitError(f"{self._pve / 'qemu-server'} does not exist: this is not a Proxmox VE "
                                   "node", ExitCode.NOT_FOUND,
                                   hint="use --host to reach a Proxmox node through its API")
            raise DeviceNotFound(f"VM {vmid}: no {path} on this node")
        return pc.parse_config(read_pve_file(path, self.root), str(path))

    def configs(self) -> dict[str, pc.VmConfig]:
        folder = self._pve / "qemu-server"
        out = {}
        for p in sorted(folder.glob("*.conf")) if folder.is_dir() else []:
            if re.fullmatch(r"\d+\.conf", p.name):
                out[p.stem] = pc.parse_config(read_pve_file(p, self.root), str(p))
        return out

    def mappings(self) -> dict[str, list[str]]:
        path = self._pve / "mapping/pci.cfg"
        return pve_mapping.parse_mapping_cfg(read_pve_file(path, self.root), str(path)) if path.is_file() else {}

    def mapping_paths(self) -> dict[str, list[str]]:
        return pve_mapping.paths_on_node(self.mappings(), self.nodename())

    def qm_command(self) -> str:
        found = shutil.which(self.qm)
        if found is None:
            raise VfiokitError(f"'{self.qm}' not found: this is not a Proxmox VE node", ExitCode.NOT_FOUND,
                               hint="use --host to reach a Proxmox node through its API")
        return found

    def run_qm(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([self.qm_command(), *args], capture_output=True, text=True, timeout=120,
                                  env=child_env({"LC_ALL": "C"}))
        except subprocess.TimeoutExpired:
            raise VfiokitError(f"'qm {' '.join(args)}' did not answer within 120 s",
                               ExitCode.WRITE_FAILED) from None

    def running(self, vmid: str) -> bool:
        """`qm status VMID` prints `status: running` or `status: stopped`."""
        r = self.run_qm("status", vmid)
        if r.returncode != 0:
            said = (r.stderr or r.stdout).strip() or f"exit {r.returncode}"
            raise VfiokitError(f"qm status {vmid}: {said}", ExitCode.NOT_FOUND)
        return r.stdout.split(":", 1)[-1].strip() == "running"
