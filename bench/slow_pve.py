"""A stand-in Proxmox VE API for `bench/run.py`: `GET /nodes` and `GET /nodes/{node}/hardware/pci`
over HTTPS on 127.0.0.1, each node's answer delayed by a fixed latency.

Only what `vfiokit cluster inventory` asks, answered in the shape of PVE::API2::Hardware::PCI (one
GPU and its audio function per node). The test suite's fake (tests/fake_pve.py) checks permissions
and parameters; this one only waits, so that what is timed is how vfiokit waits for many nodes.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PCI = [{"id": "0000:01:00.0", "class": "0x030000", "vendor": "0x10de", "device": "0x1b81", "iommugroup": 13,
        "vendor_name": "NVIDIA Corporation", "device_name": "GP104 [GeForce GTX 1070]"},
       {"id": "0000:01:00.1", "class": "0x040300", "vendor": "0x10de", "device": "0x10f0", "iommugroup": 13,
        "vendor_name": "NVIDIA Corporation", "device_name": "GP104 High Definition Audio Controller"}]


class _TlsServer(ThreadingHTTPServer):
    """HTTPS served as pveproxy serves it: many clients at once. socketserver's defaults would not:
    a listen backlog of 5 makes the kernel drop the SYNs of a client's 16 parallel connections
    past it (each retried 1 s later, TCP's initial retransmission timeout: an inventory timed at
    one or two latencies by chance), and a listening socket wrapped in TLS makes the accepting
    thread do every handshake in turn. Here the backlog is large and each connection's handshake
    is done in its own thread."""

    request_queue_size = 128
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        super().__init__(address, handler)

    def finish_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        with self.ctx.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)


class SlowPve:
    """`with SlowPve(folder, nodes=16, latency=1.0) as api:` then `api.host`, `api.cafile`."""

    def __init__(self, folder: Path, nodes: int, latency: float) -> None:
        self.cafile = folder / "cert.pem"
        key = folder / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(self.cafile)], check=True, capture_output=True)
        names = [f"node{i:02d}" for i in range(nodes)]

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0].removeprefix("/api2/json")
                if path == "/nodes":  # the cluster's list: one answer, not a node's latency
                    data: object = [{"node": n, "status": "online", "type": "node"} for n in names]
                elif path.startswith("/nodes/") and path.endswith("/hardware/pci"):
                    time.sleep(latency)  # the node is asked (pveproxy forwards it to that node)
                    data = PCI
                else:
                    self.send_error(404)
                    return
                body = json.dumps({"data": data}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cafile, key)
        self.server = _TlsServer(("127.0.0.1", 0), Handler, ctx)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> SlowPve:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
