"""The load balancer's nginx.conf, with the real nginx binary: `nginx -t`, then a running nginx
in front of three stand-in replicas (tiny HTTP servers that say who they are) to show that a
stream's HTTP requests and its live WebSocket reach one replica, that WebSocket upgrade headers
pass, that other routes are spread round-robin, and that the hashing is consistent (removing a
replica moves only the streams it had).

The copy under test differs from deploy/nginx/nginx.conf only where a machine without Docker
must: the replicas' DNS name (`liquid`, resolved by Docker's DNS with `resolve`, which needs
nginx >= 1.27.3) becomes explicit 127.0.0.1 servers, and paths under /tmp move to the test's
temporary directory."""

from __future__ import annotations

import http.client
import re
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.deploy.support import NGINX_CONF, require_binary, running, tail, wait_for_port

REPLICA_LINE = "server liquid:8000 resolve;"


def local_config(backends: list[int], listen: int, workdir: Path) -> Path:
    text = NGINX_CONF.read_text(encoding="utf-8")
    assert text.count(REPLICA_LINE) == 2, "both upstreams list the replicas by service name"
    text, n = re.subn(r"^\s*resolver(_timeout)?\s[^;]*;\n", "", text, flags=re.MULTILINE)
    assert n == 2
    servers = " ".join(f"server 127.0.0.1:{port};" for port in backends)
    text = text.replace(REPLICA_LINE, servers)
    assert "listen 8080;" in text
    text = text.replace("listen 8080;", f"listen 127.0.0.1:{listen};")
    text = text.replace("/tmp/", f"{workdir}/")
    path = workdir / "nginx.conf"
    path.write_text(text, encoding="utf-8")
    return path


def nginx_test(conf: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    exe = require_binary("nginx")
    return subprocess.run(
        [exe, "-t", "-q", "-e", "stderr", "-p", f"{workdir}/", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_nginx_config_is_valid(tmp_path: Path) -> None:
    conf = local_config([free_port(), free_port(), free_port()], free_port(), tmp_path)
    proc = nginx_test(conf, tmp_path)
    assert proc.returncode == 0, proc.stderr


# -- stand-in replicas -------------------------------------------------------------------------
class Replica(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), ReplicaHandler)
        self.name = name
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class ReplicaHandler(socketserver.StreamRequestHandler):
    server: Replica

    def handle(self) -> None:
        while True:  # keep-alive: nginx reuses upstream connections
            request_line = self.rfile.readline()
            if not request_line:
                return
            headers: dict[str, str] = {}
            while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                key, _, value = line.decode("latin-1").partition(":")
                headers[key.strip().lower()] = value.strip()
            if "content-length" in headers:
                self.rfile.read(int(headers["content-length"]))
            path = request_line.decode("latin-1").split()[1]
            with self.server.lock:
                self.server.seen.append((path, headers))
            name = self.server.name.encode()
            if headers.get("upgrade", "").lower() == "websocket":
                self.wfile.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nX-Replica: " + name + b"\r\n\r\n"
                )
                self.wfile.flush()
                return
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                + str(len(name)).encode()
                + b"\r\nX-Replica: "
                + name
                + b"\r\n\r\n"
                + name
            )
            self.wfile.flush()


@contextmanager
def replicas(n: int) -> Iterator[list[Replica]]:
    servers = [Replica(f"r{i}") for i in range(n)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        yield servers
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


@contextmanager
def nginx(backends: list[int], workdir: Path) -> Iterator[int]:
    workdir.mkdir(parents=True, exist_ok=True)
    listen = free_port()
    conf = local_config(backends, listen, workdir)
    exe = require_binary("nginx")
    log = workdir / "nginx.log"
    args = [exe, "-e", "stderr", "-p", f"{workdir}/", "-c", str(conf), "-g", "daemon off;"]
    with running(args, log) as proc:
        try:
            wait_for_port(listen, proc)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n{tail(log)}") from exc
        yield listen


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("X-Replica", "")
    finally:
        conn.close()


def websocket_upgrade(port: int, path: str) -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: liquid.test\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.decode("latin-1")
    status = int(head.split()[1])
    m = re.search(r"^X-Replica: (\S+)", head, re.MULTILINE | re.IGNORECASE)
    return status, m.group(1) if m else ""


STREAMS = [f"pump-{i:03d}" for i in range(48)]


def stream_owners(port: int) -> dict[str, str]:
    """The replica each stream's requests go to; every route of a stream must agree."""
    owners: dict[str, str] = {}
    for sid in STREAMS:
        seen = set()
        for method, suffix, body in (
            ("POST", "/events", b'{"t": 1.0, "x": [0.0]}'),
            ("POST", "/events", b'[{"t": 2.0, "x": [0.0]}]'),
            ("GET", "", None),
            ("GET", "/state", None),
            ("GET", "/prediction?at=3", None),
            ("DELETE", "", None),
        ):
            status, replica = request(port, method, f"/v1/streams/{sid}{suffix}", body)
            assert status == 200
            assert replica
            seen.add(replica)
        status, replica = websocket_upgrade(port, f"/v1/streams/{sid}/live")
        assert status == 101, "the WebSocket upgrade reaches the replica and comes back"
        seen.add(replica)
        assert len(seen) == 1, f"{sid} was served by {sorted(seen)}"
        owners[sid] = seen.pop()
    return owners


@pytest.mark.integration
def test_balancer_routes_by_stream_and_passes_websockets(tmp_path: Path) -> None:
    with ExitStack() as stack:
        servers = stack.enter_context(replicas(3))
        port = stack.enter_context(nginx([s.port for s in servers], tmp_path / "lb3"))

        owners = stream_owners(port)
        assert set(owners.values()) == {"r0", "r1", "r2"}, "48 streams spread over 3 replicas"
        assert stream_owners(port) == owners, "the mapping is stable"

        # The upgrade headers reached the replica; ordinary requests carry no
        # `Connection: upgrade` (so upstream keep-alive works).
        requests = [r for s in servers for r in s.seen]
        live = [h for path, h in requests if path.endswith("/live")]
        assert len(live) == 2 * len(STREAMS)
        for headers in live:
            assert headers["upgrade"].lower() == "websocket"
            assert headers["connection"].lower() == "upgrade"
            assert headers["sec-websocket-key"]
        plain = [h for path, h in requests if not path.endswith("/live")]
        assert all("upgrade" not in h.get("connection", "").lower() for h in plain)
        assert all(h["x-forwarded-for"] == "127.0.0.1" for h in plain)

        # Other routes are round-robin: both multi-stream ingestion and reads.
        spread = {request(port, "POST", "/v1/events", b"{}")[1] for _ in range(12)}
        spread |= {request(port, "GET", "/v1/models")[1] for _ in range(12)}
        assert spread == {"r0", "r1", "r2"}

        # The balancer's own health, and no metrics through it (each replica is scraped).
        assert request(port, "GET", "/lb-healthz")[0] == 200
        assert request(port, "GET", "/metrics") == (404, "")

        # Consistent hashing: without r2, only r2's streams move.
        port2 = stack.enter_context(nginx([servers[0].port, servers[1].port], tmp_path / "lb2"))
        owners2 = stream_owners(port2)
        moved = {sid for sid in STREAMS if owners2[sid] != owners[sid]}
        assert moved == {sid for sid, r in owners.items() if r == "r2"}
