"""A Proxmox VE cluster through its HTTPS API (proxmoxer): nodes, PCI devices, VM configs, mappings.

The API token secret never comes from the command line (it would sit in `ps` and shell history):
it is read from `VFIOKIT_PVE_TOKEN` or from a file. Every failure becomes one line and an exit code:
unreachable or timed out or no rights is `REMOTE`; a config changed meanwhile (the `digest` check of
PVE::Tools::assert_if_modified / qemu-server update_vm_api) is `CONFLICT`.

`GET /nodes/{node}/hardware/pci` (pve-manager PVE/API2/Hardware/PCI.pm, PVE::SysFSTools::lspci) gives
per function: `id` (`0000:01:00.0`), `class` (`0x030000`), `vendor`/`device` (`0x10de`), `iommugroup`
(-1 without IOMMU) and, verbose, subsystem ids and pci.ids names. Nothing about drivers, bridges above
a device or config space: a topology built from it leaves those `None`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from vfiokit.errors import SECRET_ENVS, BadInput, Conflict, ExitCode, RemoteError, VfiokitError, register_secret
from vfiokit.formats import pve_config as pc
from vfiokit.formats.pve_config import CONFLICT_MARKS
from vfiokit.model import Device, Group, HostInfo, PciAddress, Topology

TOKEN_ENV = SECRET_ENVS[0]
TOKEN_ID_ENV = "VFIOKIT_PVE_TOKEN_ID"

#: Messages Proxmox answers a stale `digest` with (qemu-server update_vm_api; PVE::Tools).


@dataclass(frozen=True)
class Credentials:
    host: str
    token_id: str
    secret: str
    #: True, False, or a CA bundle path (requests' `verify`).
    verify: bool | str = True
    timeout: float = 10.0


def read_secret(token_file: str | None) -> str:
    """The token secret from `--token-file` or `VFIOKIT_PVE_TOKEN`; `BadInput` when neither has it
    or when it holds a line break or another control character (it goes into an HTTP header,
    where requests would quote the whole header, secret included, in its error). The secret is
    registered with `errors.scrub`, so no message shows it."""
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as f:
                secret = f.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
            raise BadInput(f"{token_file}: cannot read the API token ({why})") from None
        where = token_file
        if not secret:
            raise BadInput(f"{token_file}: empty (expected the API token secret)")
    else:
        secret, where = os.environ.get(TOKEN_ENV, "").strip(), TOKEN_ENV
        if not secret:
            raise BadInput(f"no API token secret: set {TOKEN_ENV} or give --token-file FILE "
                           "(never on the command line)")
    register_secret(secret)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in secret):
        raise BadInput(f"{where}: the API token secret holds a line break or another control character "
                       "(not shown); it must be one line, as Proxmox shows it")
    return secret


def split_token_id(token_id: str) -> tuple[str, str]:
    """`root@pam!vfiokit` -> (`root@pam`, `vfiokit`), as Proxmox shows a token id."""
    user, bang, name = token_id.partition("!")
    if not bang or "@" not in user or not name:
        raise BadInput(f"--token-id '{token_id}': expected USER@REALM!TOKENNAME (e.g. root@pam!vfiokit)")
    return user, name


def _describe(e: BaseException, what: str, host: str) -> VfiokitError:
    """Turn a proxmoxer/requests failure into our one line."""
    import requests
    from proxmoxer.core import ResourceException

    if isinstance(e, ResourceException):
        text = str(e.content or e.status_message).strip()
        if e.errors:
            text += " - " + "; ".join(f"{k}: {str(v).strip()}" for k, v in dict(e.errors).items())
        if any(m in text for m in CONFLICT_MARKS):
            return Conflict(f"{what}: {text}: the config changed since vfiokit read it; nothing was "
                            "written", hint="run the command again to see the new config")
        if e.status_code == 401:
            return RemoteError(f"{what}: authentication failed ({e.status_code} {text})",
                               hint="check --token-id and the token secret")
        if e.status_code == 403:
            return RemoteError(f"{what}: no rights ({e.status_code} {text})",
                               hint="give the token the privilege named (and uncheck 'Privilege Separation' "
                                    "or grant the token itself)")
        return RemoteError(f"{what}: {e.status_code} {text}")
    if isinstance(e, requests.exceptions.SSLError):
        return RemoteError(f"{host}: TLS certificate not trusted ({what})",
                           hint="give the node's CA with --ca-file (/etc/pve/pve-root-ca.pem) or --insecure")
    if isinstance(e, requests.exceptions.Timeout):
        return RemoteError(f"{host}: timed out ({what})")
    if isinstance(e, requests.exceptions.ConnectionError):
        reason = str(e.args[0]) if e.args else str(e)
        reason = reason.split("Caused by ")[-1].strip("()'\" ") if "Caused by" in reason else reason
        return RemoteError(f"{host}: unreachable ({what}): {reason}")
    return RemoteError(f"{host}: {what}: {e}")


def _apply_timeout(api: Any, timeout: float) -> None:
    """Give every request the timeout. proxmoxer 1.2 (Debian 12's python3-proxmoxer) keeps the
    `timeout` it is given but never passes it to requests (its ProxmoxHttpSession.request defaults
    to None), so a node that stops answering would hang `cluster inventory` for ever."""
    session = getattr(api, "_store", {}).get("session")
    if session is None:
        return
    request = session.request

    def with_timeout(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        # requests' Session.request(method, url, params, data, headers, cookies, files, auth, timeout, ...)
        if kwargs.get("timeout") is None and len(args) < 7:
            kwargs["timeout"] = timeout
        return request(method, url, *args, **kwargs)

    session.request = with_timeout


class PveApi:
    """A connection to one Proxmox VE API endpoint, with vfiokit's error handling."""

    def __init__(self, creds: Credentials) -> None:
        try:
            from proxmoxer import ProxmoxAPI
        except ImportError:
            raise RemoteError("the Proxmox API needs proxmoxer",
                              hint="apt-get install python3-proxmoxer (or pip install 'vfiokit[proxmox]')") from None
        user, name = split_token_id(creds.token_id)
        if creds.verify is False:
            # The CLI warns in its own words, once per run; urllib3 would add a multi-line
            # Python warning on every request.
            import warnings

            from urllib3.exceptions import InsecureRequestWarning

            warnings.simplefilter("ignore", InsecureRequestWarning)
        self.host = creds.host
        self.creds = creds
        self._api = ProxmoxAPI(creds.host, user=user, token_name=name, token_value=creds.secret,
                               verify_ssl=creds.verify, timeout=creds.timeout, service="PVE")
        _apply_timeout(self._api, creds.timeout)

    def call(self, method: str, path: str, **params: Any) -> Any:
        what = f"{method} {path}"
        try:
            return getattr(self._api(path.lstrip("/")), method.lower())(**params)
        except Exception as e:  # proxmoxer/requests errors: turned into ours, with the request named
            if isinstance(e, VfiokitError):
                raise
            raise _describe(e, what, self.host) from None

    def objects(self, path: str, keys: tuple[str, ...] = (), **params: Any) -> list[dict[str, Any]]:
        """GET a list of objects, each with `keys`; anything else (a broken proxy or a foreign
        server answering `null`, a string, a list of numbers) is one line, REMOTE."""
        answer = self.call("GET", path, **params)
        if not isinstance(answer, list) or not all(isinstance(a, dict) and all(k in a for k in keys)
                                                   for a in answer):
            need = f" each with {', '.join(repr(k) for k in keys)}" if keys else ""
            raise RemoteError(f"{self.host}: GET {path}: unexpected answer (expected a list of objects{need}): "
                              f"{_short(answer)}")
        return answer

    def object(self, path: str, **params: Any) -> dict[str, Any]:
        """GET one object (see `objects`)."""
        answer = self.call("GET", path, **params)
        if not isinstance(answer, dict):
            raise RemoteError(f"{self.host}: GET {path}: unexpected answer (expected an object): {_short(answer)}")
        return answer

    # --- reads -----------------------------------------------------------------------------------

    def nodes(self) -> list[dict[str, Any]]:
        return sorted(self.objects("/nodes", ("node",)), key=lambda n: str(n["node"]))

    def node_pci(self, node: str) -> list[dict[str, Any]]:
        # an empty blacklist shows bridges too (pve-docs: pvesh get ... --pci-class-blacklist "")
        return self.objects(f"/nodes/{node}/hardware/pci", **{"pci-class-blacklist": ""})

    def vm_node(self, vmid: str) -> str:
        for r in self.objects("/cluster/resources", type="vm"):
            if str(r.get("vmid")) == str(vmid) and r.get("type") == "qemu":
                if "node" not in r:
                    raise RemoteError(f"{self.host}: GET /cluster/resources: VM {vmid} without 'node'")
                return str(r["node"])
        raise VfiokitError(f"VM {vmid}: no such QEMU VM in the cluster at {self.host}", ExitCode.NOT_FOUND)

    def vm_config(self, node: str, vmid: str) -> tuple[pc.VmConfig, str]:
        """The VM's config as text (current values, then [PENDING]) and the digest Proxmox gave."""
        current = self.object(f"/nodes/{node}/qemu/{vmid}/config", current=1)
        pending = self.objects(f"/nodes/{node}/qemu/{vmid}/pending", ("key",))
        digest = str(current.pop("digest", ""))
        return pc.parse_config(config_text(current, pending), f"{node}/qemu-server/{vmid}.conf"), digest

    def running(self, node: str, vmid: str) -> bool:
        return self.object(f"/nodes/{node}/qemu/{vmid}/status/current").get("status") == "running"

    def node_configs(self, node: str) -> dict[str, pc.VmConfig]:
        out = {}
        for vm in self.objects(f"/nodes/{node}/qemu", ("vmid",)):
            vmid = str(vm["vmid"])
            out[vmid] = self.vm_config(node, vmid)[0]
        return out

    def mappings(self) -> dict[str, dict[str, Any]]:
        return {str(m["id"]): m for m in self.objects("/cluster/mapping/pci", ("id",))}


def _short(answer: Any) -> str:
    """An answer shown in an error: short, one line."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring = r.maxother = 60
    r.maxlist = r.maxdict = 4
    return r.repr(answer)


def config_text(current: dict[str, Any], pending: Iterable[dict[str, Any]]) -> str:
    """A config file as qemu-server writes it (sorted keys, description as `#` lines, [PENDING])."""
    lines = [f"#{d}\n" for d in str(current.get("description", "")).splitlines()] \
        if current.get("description") else []
    lines += [f"{k}: {v}\n" for k, v in sorted(current.items()) if k not in ("description", "digest")]
    pend = {p["key"]: p["pending"] for p in pending if "pending" in p}
    deletes = sorted(p["key"] for p in pending if p.get("delete"))
    if pend or deletes:
        lines.append("\n[PENDING]\n")
        if deletes:
            lines.append(f"delete: {','.join(deletes)}\n")
        lines += [f"{k}: {v}\n" for k, v in sorted(pend.items())]
    return "".join(lines)


def _hex(value: Any, where: str) -> int | None:
    if value is None:
        return None
    try:
        return int(str(value), 16)
    except ValueError:
        raise BadInput(f"{where}: '{value}' is not a hex number") from None


def topology_from_pci(items: list[dict[str, Any]], node: str, host: str = "") -> Topology:
    """The Topology of one node from its `/hardware/pci` answer (with an empty class blacklist)."""
    devices = []
    groups: dict[int, list[PciAddress]] = {}
    for n, it in enumerate(items):
        where = f"{node}: /hardware/pci item {n}"
        try:
            addr = PciAddress.parse(str(it["id"]))
            group = int(it["iommugroup"])
        except KeyError as e:
            raise BadInput(f"{where}: missing '{e.args[0]}'") from None
        except (BadInput, ValueError, TypeError):
            raise BadInput(f"{where}: unreadable id or iommugroup ({it.get('id')!r}, "
                           f"{it.get('iommugroup')!r})") from None
        if group >= 0:
            groups.setdefault(group, []).append(addr)
        devices.append(Device(
            address=addr,
            vendor_id=_hex(it.get("vendor"), where),
            device_id=_hex(it.get("device"), where),
            subsystem_vendor_id=_hex(it.get("subsystem_vendor"), where),
            subsystem_device_id=_hex(it.get("subsystem_device"), where),
            class_code=_hex(it.get("class"), where),
            iommu_group=group if group >= 0 else None,
            vendor_name=it.get("vendor_name"),
            device_name=it.get("device_name"),
        ))
    devices.sort(key=lambda d: d.address)
    group_list = tuple(Group(g, tuple(sorted(m))) for g, m in sorted(groups.items()))
    src = f"node {node}" + (f" via {host}" if host else "")
    notes = ("read through the Proxmox API: no drivers, bridge positions, config space (PCIe, ACS) or "
             "host usage, so verdicts rest on group membership and device classes only",)
    return Topology(tuple(devices), group_list if groups else None, HostInfo(hostname=node), src, notes)


@dataclass
class NodeResult:
    node: str
    topology: Topology | None = None
    error: VfiokitError | None = None


def inventory(api: PveApi, nodes: list[str], progress: Callable[[str, NodeResult], None] | None = None,
              workers: int = 4) -> list[NodeResult]:
    """Every node's topology, asked in parallel; a node that fails is a result with its error."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    def one(node: str) -> NodeResult:
        try:
            return NodeResult(node, topology_from_pci(api.node_pci(node), node, api.host))
        except VfiokitError as e:
            return NodeResult(node, error=e)

    results: dict[str, NodeResult] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(nodes)))) as pool:
        futures = {pool.submit(one, n): n for n in nodes}
        for fut in as_completed(futures):
            r = fut.result()
            results[r.node] = r
            if progress is not None:
                progress(r.node, r)
    return [results[n] for n in nodes]
