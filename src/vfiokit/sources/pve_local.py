"""What a Proxmox VE node says about its VMs, read locally: configs, mappings, running state.

Files are read below a root folder (`--root`), like every source: `etc/pve/qemu-server/*.conf` (the
local node's VMs, a link into pmxcfs' `nodes/<node>/`), `etc/pve/mapping/pci.cfg` (cluster PCI
mappings, pve-guest-common PVE/Mapping/PCI.pm), the host name (PVE::INotify::nodename,
`rootfs.read_hostname`). Whether a VM runs is asked of `qm status`, Proxmox's own answer.
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
                           ExitCode.PERMISSION, file=str(path)) from None
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text", file=str(path)) from None
    except FileNotFoundError:
        raise BadInput(f"{path}: missing (a Proxmox VE node has it)", file=str(path)) from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror or e})", file=str(path)) from None


@dataclass
class LocalPve:
    """This Proxmox node, read below `root`; `qm` is the command that answers for VMs."""

    root: str = "/"
    qm: str = "qm"

    @property
    def _pve(self) -> Path:
        return Path(self.root) / "etc/pve"

    def nodename(self) -> str:
        """PVE::INotify::nodename: the host's short name, read by `rootfs.read_hostname` as every
        source reads it (the running kernel's, else `etc/hostname`)."""
        name = (rootfs.read_hostname(self.root) or "").split(".")[0]
        if not name:
            path = str(Path(self.root) / "etc/hostname")
            raise BadInput(f"{path}: missing (a Proxmox VE node has it)", file=path)
        return name

    def config_path(self, vmid: str) -> Path:
        return self._pve / "qemu-server" / f"{vmid}.conf"

    def config(self, vmid: str) -> pc.VmConfig:
        path = self.config_path(vmid)
        if not path.is_file():
            if not (self._pve / "qemu-server").is_dir():
                raise VfiokitError(f"{self._pve / 'qemu-server'} does not exist: this is not a Proxmox VE "
                                   "node", ExitCode.NOT_FOUND,
                                   hint="use --host to reach a Proxmox node through its API",
                                   file=str(self._pve / "qemu-server"))
            raise DeviceNotFound(f"VM {vmid}: no {path} on this node", file=str(path))
        return pc.parse_config(read_pve_file(path, self.root), str(path))

    def configs(self) -> dict[str, pc.VmConfig]:
        """Every VM's config, read as qemu-server loads it (non-strict parse_vm_config): a line or
        section Proxmox skips in another VM must not stop an edit of this one. The VM being edited
        is read strictly (`config`)."""
        folder = self._pve / "qemu-server"
        out = {}
        for p in sorted(folder.glob("*.conf")) if folder.is_dir() else []:
            if re.fullmatch(r"\d+\.conf", p.name):
                out[p.stem] = pc.parse_config(read_pve_file(p, self.root), str(p), strict=False)
        return out

    def mappings(self) -> dict[str, list[str]]:
        path = self._pve / "mapping/pci.cfg"
        return pve_mapping.parse_mapping_cfg(read_pve_file(path, self.root), str(path)) if path.is_file() else {}

    def mapping_paths(self) -> dict[str, list[str]]:
        return pve_mapping.paths_on_node(self.mappings(), self.nodename())

    def has_qm(self) -> bool:
        """This machine has the `qm` command: it is a Proxmox node (off-node, --root only reads)."""
        return shutil.which(self.qm) is not None

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
