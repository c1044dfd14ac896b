"""A small fake Proxmox VE API for the tests: stdlib HTTPS on 127.0.0.1, built from the published schema.

Only the methods vfiokit calls, each checked the way pve-manager / qemu-server check them, with the
parameters, permissions and answers of the official schema (pve-docs api-viewer apidata.js):

- GET  /nodes                                  (user: all)
- GET  /nodes/{node}/hardware/pci              (Sys.Audit or Sys.Modify on /; pci-class-blacklist, verbose)
- GET  /cluster/resources?type=vm              (user: all; lists what the token may see)
- GET  /nodes/{node}/qemu                      (user: all)
- GET  /nodes/{node}/qemu/{vmid}/config        (VM.Audit; current, snapshot; answer has `digest`)
- GET  /nodes/{node}/qemu/{vmid}/pending       (VM.Audit; items key, value, pending, delete)
- GET  /nodes/{node}/qemu/{vmid}/status/current (VM.Audit)
- PUT  /nodes/{node}/qemu/{vmid}/config        (VM.Config.HWType; digest maxLength 40, delete, hostpci[n];
                                                qemu-server check_hostpci_perm: only root@pam sets a raw host)
- GET/POST /cluster/mapping/pci, GET/PUT /cluster/mapping/pci/{id} (Mapping.Audit / Mapping.Modify, digest)

Errors come as Proxmox sends them: the message in the HTTP reason phrase (what proxmoxer reports),
400 with per-parameter `errors`, 401 for a bad token, 403 `Permission check failed (path, priv)`,
500 for a stale digest (`checksum mismatch (file change by other user?)`). A node can be made to
hang (`slow_nodes`) to test timeouts. Hardware answers are seeded per node, shaped like
PVE::SysFSTools::lspci's (`id` with domain, `0x` ids, 24-bit `class`, `iommugroup` -1 without IOMMU).
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

ALL_PRIVS = {"Sys.Audit", "Sys.Modify", "VM.Audit", "VM.Config.HWType", "Mapping.Audit", "Mapping.Modify",
             "Mapping.Use"}

# The schema facts the fake checks (apidata.js): parameter names per method and their patterns.
_PCIRE = r"(?:[a-f0-9]{4,}:)?[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?"
_MAP_ID = r"[a-f0-9]{4,}:[a-f0-9]{2}:[a-f0-9]{2}(?:.[a-f0-9])?"  # the schema's `.` is unescaped, as here
_MAP_PATH = rf"(?:{_MAP_ID};)*{_MAP_ID}"
_HOSTPCI_KEYS = {"host", "mapping", "device-id", "driver", "legacy-igd", "mdev", "pcie", "rombar", "romfile",
                 "sub-device-id", "sub-vendor-id", "vendor-id", "x-vga"}
_CONFIG_PUT = {"node", "vmid", "digest", "delete", "revert", "skiplock", "machine", "bios", "vga"}


class PveError(Exception):
    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors


def _check_hostpci(key: str, value: str) -> dict[str, str]:
    """pve-qm-hostpci, as PVE::JSONSchema::parse_property_string checks it."""
    out: dict[str, str] = {}
    for part in value.split(","):
        k, eq, v = part.partition("=")
        if not eq:
            k, v = "host", part
        if k not in _HOSTPCI_KEYS:
            raise PveError(400, "Parameter verification failed.", {key: f"invalid format - unknown key '{k}'"})
        out[k] = v
    if "host" in out and not re.fullmatch(rf"{_PCIRE}(;{_PCIRE})*", out["host"]):
        raise PveError(400, "Parameter verification failed.",
                       {key: "invalid format - value does not match the regex pattern"})
    return out


def _check_map(entry: str) -> dict[str, str]:
    fields = dict(p.partition("=")[::2] for p in entry.split(","))
    bad = None
    if not re.fullmatch(r"[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}", fields.get("id", "")):
        bad = "id"
    elif not re.fullmatch(_MAP_PATH, fields.get("path", "")):
        bad = "path"
    elif "subsystem-id" in fields and not re.fullmatch(r"[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}", fields["subsystem-id"]):
        bad = "subsystem-id"
    elif "node" not in fields or set(fields) - {"node", "path", "id", "subsystem-id", "iommugroup",
                                                "description"}:
        bad = "node"
    if bad:
        raise PveError(400, "Parameter verification failed.", {"map": f"invalid format - {bad}"})
    return fields


@dataclass
class Vm:
    config: dict[str, str]
    running: bool = False
    pending: dict[str, str] = field(default_factory=dict)
    pending_delete: set[str] = field(default_factory=set)

    def text(self) -> str:
        # what qemu-server's write_vm_config writes (sorted keys), the digest is its SHA1
        main = "".join(f"{k}: {v}\n" for k, v in sorted(self.config.items()))
        if self.pending or self.pending_delete:
            main += "\n[PENDING]\n"
            if self.pending_delete:
                main += f"delete: {','.join(sorted(self.pending_delete))}\n"
            main += "".join(f"{k}: {v}\n" for k, v in sorted(self.pending.items()))
        return main

    @property
    def digest(self) -> str:
        return hashlib.sha1(self.text().encode()).hexdigest()


@dataclass
class Token:
    secret: str
    privs: set[str]


@dataclass
class FakeCluster:
    pci: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    vms: dict[str, dict[str, Vm]] = field(default_factory=dict)  # node -> vmid -> Vm
    mappings: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    #: node -> seconds to wait before answering /hardware/pci (a node that does not answer in time).
    slow_nodes: dict[str, float] = field(default_factory=dict)
    #: Called before a config PUT is checked (to simulate a concurrent edit).
    before_put: Any = None
    #: path -> the `data` a broken server (or a proxy, or another product) answers a GET with.
    broken: dict[str, Any] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def mapping_digest(self) -> str:
        text = json.dumps(self.mappings, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()

    def vm(self, node: str, vmid: str) -> Vm:
        try:
            return self.vms[node][vmid]
        except KeyError:
            raise PveError(500, f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist") \
                from None


class _Handler(BaseHTTPRequestHandler):
    cluster: FakeCluster
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _params(self) -> tuple[str, list[tuple[str, str]]]:
        url = urlsplit(self.path)
        pairs = parse_qsl(url.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            pairs += parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True)
        return url.path, pairs

    def _auth(self) -> tuple[str, set[str]]:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("PVEAPIToken="):
            raise PveError(401, "No ticket")
        tokenid, _, secret = auth[len("PVEAPIToken="):].partition("=")
        tok = self.cluster.tokens.get(tokenid)
        if tok is None or tok.secret != secret:
            raise PveError(401, "invalid token value!")
        return tokenid, tok.privs

    def _send(self, status: int, body: dict[str, Any], reason: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status, reason)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:  # the client gave up (a timeout test): nothing to answer to
            self.close_connection = True

    def _serve(self, method: str) -> None:
        path, pairs = self._params()
        try:
            if not path.startswith("/api2/json/"):
                raise PveError(501, f"Method '{method} {path}' not implemented")
            user, privs = self._auth()
            params: dict[str, Any] = {}
            for k, v in pairs:
                if k == "map":
                    params.setdefault("map", []).append(v)
                else:
                    params[k] = v
            self.cluster.requests.append((method, path[len("/api2/json"):], params))
            api_path = path[len("/api2/json"):]
            if method == "GET" and api_path in self.cluster.broken:
                data = self.cluster.broken[api_path]
            else:
                data = route(self.cluster, method, api_path, params, user, privs)
            self._send(200, {"data": data})
        except PveError as e:
            body: dict[str, Any] = {"data": None}
            if e.errors:
                body["errors"] = e.errors
            self._send(e.status, body, e.message)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_POST(self) -> None:
        self._serve("POST")


def _need(privs: set[str], path: str, *wanted: str) -> None:
    if not privs & set(wanted):
        raise PveError(403, f"Permission check failed ({path}, {wanted[0]})")


def _only(params: dict[str, Any], allowed: set[str], hostpci: bool = False) -> None:
    extra = [k for k in params if k not in allowed and not (hostpci and re.fullmatch(r"hostpci\d+", k))]
    if extra:
        raise PveError(400, "Parameter verification failed.",
                       {k: "property is not defined in schema and the schema does not allow additional "
                           "properties" for k in extra})


def route(c: FakeCluster, method: str, path: str, p: dict[str, Any], user: str, privs: set[str]) -> Any:
    m = re.fullmatch(r"/nodes/([^/]+)/qemu/(\d+)/(config|pending|status/current)", path)
    if m:
        node, vmid, what = m.groups()
        vm = c.vm(node, vmid)
        if method == "GET":
            _need(privs, f"/vms/{vmid}", "VM.Audit")
            if what == "status/current":
                return {"vmid": int(vmid), "status": "running" if vm.running else "stopped"}
            if what == "pending":
                keys = sorted(set(vm.config) | set(vm.pending) | vm.pending_delete)
                out = []
                for k in keys:
                    item: dict[str, Any] = {"key": k}
                    if k in vm.config:
                        item["value"] = vm.config[k]
                    if k in vm.pending:
                        item["pending"] = vm.pending[k]
                    if k in vm.pending_delete:
                        item["delete"] = 1
                    out.append(item)
                return out
            _only(p, {"current", "snapshot"})
            cfg = dict(vm.config)
            if p.get("current") not in ("1", "true"):
                cfg.update(vm.pending)
                for k in vm.pending_delete:
                    cfg.pop(k, None)
            return {**cfg, "digest": vm.digest}
        if method == "PUT" and what == "config":
            _need(privs, f"/vms/{vmid}", "VM.Config.HWType")
            _only(p, _CONFIG_PUT, hostpci=True)
            if "digest" in p and len(p["digest"]) > 40:
                raise PveError(400, "Parameter verification failed.",
                               {"digest": "value may only be 40 characters long"})
            if c.before_put is not None:
                c.before_put(c, path)
            # qemu-server update_vm_api: the digest first, then check_hostpci_perm per option.
            if p.get("digest") and p["digest"] != vm.digest:
                raise PveError(500, "checksum mismatch (file change by other user?)")
            deletes = [k for k in re.split(r"[,;\s]+", p.get("delete", "")) if k]
            for k, v in p.items():
                if re.fullmatch(r"hostpci\d+", k):
                    dev = _check_hostpci(k, v)
                    if user != "root@pam" and "host" in dev:
                        raise PveError(500, f"only root can set '{k}' config for non-mapped devices")
                    if "mapping" in dev:
                        if dev["mapping"] not in c.mappings:
                            raise PveError(500, f"PCI device mapping not found for '{dev['mapping']}'")
                        _need(privs, f"/mapping/pci/{dev['mapping']}", "Mapping.Use")
                    vm.pending_delete.discard(k)  # remove_from_pending_delete
                    if vm.running:  # hostpci is not hot-pluggable: it waits in [PENDING]
                        vm.pending[k] = v
                    else:
                        vm.config[k] = v
            for k in deletes:
                old = vm.config.get(k, vm.pending.get(k, ""))
                if k.startswith("hostpci") and user != "root@pam" and "host" in _check_hostpci(k, old):
                    raise PveError(500, f"only root can set '{k}' config for non-mapped devices")
                if vm.running and k in vm.config:
                    vm.pending_delete.add(k)
                    vm.pending.pop(k, None)
                else:
                    vm.config.pop(k, None)
                    vm.pending.pop(k, None)
            if not vm.running:  # update_vm_api -> vmconfig_apply_pending: all of [PENDING] applies
                vm.config.update(vm.pending)
                for k in vm.pending_delete:
                    vm.config.pop(k, None)
                vm.pending.clear()
                vm.pending_delete.clear()
            return None
    if method == "GET" and path == "/nodes":
        return [{"node": n, "status": "offline" if n in c.slow_nodes else "online", "type": "node"}
                for n in sorted(c.pci)]
    m = re.fullmatch(r"/nodes/([^/]+)/hardware/pci", path)
    if m and method == "GET":
        node = m.group(1)
        _need(privs, "/", "Sys.Audit", "Sys.Modify")
        _only(p, {"pci-class-blacklist", "verbose"})
        if node in c.slow_nodes:
            time.sleep(c.slow_nodes[node])
        if node not in c.pci:
            raise PveError(595, f"no such node '{node}'")
        blacklist = [x for x in re.split(r"[;,\s]+", p.get("pci-class-blacklist", "05;06;0b")) if x]
        items = [d for d in c.pci[node] if not any(d["class"].startswith("0x" + b) for b in blacklist)]
        if p.get("verbose", "1") in ("0", "false"):
            items = [{k: d[k] for k in ("id", "class", "vendor", "device", "iommugroup")} for d in items]
        return items
    m = re.fullmatch(r"/nodes/([^/]+)/qemu", path)
    if m and method == "GET":
        return [{"vmid": int(v), "status": "running" if vm.running else "stopped"}
                for v, vm in sorted(c.vms.get(m.group(1), {}).items())]
    if path == "/cluster/resources" and method == "GET":
        _only(p, {"type"})
        return [{"id": f"qemu/{v}", "type": "qemu", "vmid": int(v), "node": n,
                 "status": "running" if vm.running else "stopped"}
                for n, vms in sorted(c.vms.items()) for v, vm in sorted(vms.items())]
    if path == "/cluster/mapping/pci":
        if method == "GET":
            return [{**m, "id": i, "digest": c.mapping_digest()} for i, m in sorted(c.mappings.items())
                    if privs & {"Mapping.Audit", "Mapping.Use", "Mapping.Modify"}]
        if method == "POST":
            _need(privs, "/mapping/pci", "Mapping.Modify")
            _only(p, {"id", "description", "map", "mdev", "live-migration-capable"})
            for e in p.get("map", []):
                _check_map(e)
            if p["id"] in c.mappings:
                raise PveError(500, f"create hardware mapping failed: pci ID '{p['id']}' already defined")
            c.mappings[p["id"]] = {"map": list(p.get("map", [])),
                                   **({"description": p["description"]} if "description" in p else {})}
            return None
    m = re.fullmatch(r"/cluster/mapping/pci/([^/]+)", path)
    if m:
        mid = m.group(1)
        if method == "GET":
            _need(privs, f"/mapping/pci/{mid}", "Mapping.Audit", "Mapping.Use", "Mapping.Modify")
            if mid not in c.mappings:
                raise PveError(500, f"mapping '{mid}' not found")
            return {**c.mappings[mid], "digest": c.mapping_digest()}
        if method == "PUT":
            _need(privs, f"/mapping/pci/{mid}", "Mapping.Modify")
            if c.before_put is not None:
                c.before_put(c, path)
            _only(p, {"description", "map", "mdev", "digest", "delete", "live-migration-capable"})
            if p.get("digest") and p["digest"] != c.mapping_digest():
                raise PveError(500, "update hardware mapping failed: detected modified configuration - "
                                    "file changed by other user? Try again.")
            if mid not in c.mappings:
                raise PveError(500, f"update hardware mapping failed: pci ID '{mid}' does not exist")
            for e in p.get("map", []):
                _check_map(e)
            if "map" in p:
                c.mappings[mid]["map"] = list(p["map"])
            if "description" in p:
                c.mappings[mid]["description"] = p["description"]
            return None
    raise PveError(501, f"Method '{method} {path}' not implemented")


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), like a fresh node's pve-ssl.pem."""
    cert, key = folder / "pve-ssl.pem", folder / "pve-ssl.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class FakePve:
    """The fake running in a thread on 127.0.0.1 (a free port); `url`, `host`, `cafile`."""

    def __init__(self, cluster: FakeCluster, folder: Path) -> None:
        self.cluster = cluster
        self.cafile, key = make_cert(folder)
        handler = type("Handler", (_Handler,), {"cluster": cluster})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cafile, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakePve:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
