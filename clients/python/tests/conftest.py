"""Fixtures: a live Tessera named by environment variables (Tessera's own test suite starts
one and sets them; see crates/tessera/tests/api/python_client.rs), and small local HTTP stubs
for the rules that need a misbehaving server.

    TESSERA_TEST_ISSUER, TESSERA_TEST_AUDIENCE      the server and the audience it signs for
    TESSERA_TEST_CLIENT_ID, TESSERA_TEST_CLIENT_SECRET   a service account with tokens:introspect
    TESSERA_TEST_PASSWORD                            password of root@ (admin), ada@ (user), vic@ (viewer)
    TESSERA_TEST_TABLE                               the shared request table (JSON)
"""

from __future__ import annotations

import json
import os
import socket
import threading
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest


@dataclass
class Live:
    """The live Tessera under test."""

    issuer: str
    audience: str
    client_id: str
    client_secret: str
    password: str
    table: Optional[str]

    def post(self, path: str, body: Dict[str, Any], token: Optional[str] = None) -> Tuple[int, Any, List[str]]:
        """POSTs JSON; returns the status, the parsed body (or None) and `Set-Cookie` values."""
        request = urllib.request.Request(
            self.issuer + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                cookies = response.headers.get_all("Set-Cookie") or []
                return response.status, json.loads(raw) if raw else None, cookies
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None, []

    def login(self, email: str, delivery: str = "body") -> Tuple[Any, List[str]]:
        status, body, cookies = self.post(
            "/api/v1/auth/login",
            {"login": email, "password": self.password, "delivery": delivery},
        )
        assert status == 200, body
        return body, cookies

    def logout(self, token: str) -> None:
        status, body, _ = self.post("/api/v1/auth/logout", {}, token=token)
        assert status == 204, body


@pytest.fixture(scope="session")
def live() -> Live:
    issuer = os.environ.get("TESSERA_TEST_ISSUER")
    if not issuer:
        pytest.skip("no live Tessera: run through `cargo test -p tessera --test api python_client`")
    return Live(
        issuer=issuer,
        audience=os.environ["TESSERA_TEST_AUDIENCE"],
        client_id=os.environ["TESSERA_TEST_CLIENT_ID"],
        client_secret=os.environ["TESSERA_TEST_CLIENT_SECRET"],
        password=os.environ["TESSERA_TEST_PASSWORD"],
        table=os.environ.get("TESSERA_TEST_TABLE"),
    )


Handler = Callable[[BaseHTTPRequestHandler], Tuple[int, Dict[str, Any]]]


class Stub:
    """A local HTTP server answering JSON from a function of the request, counting calls."""

    def __init__(self, handler: Handler) -> None:
        self.calls = 0
        stub = self

        class RequestHandler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                stub.calls += 1
                length = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(length) if length else b""
                status, body = handler(self)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Callable[[Handler], Stub]]:
    made: List[Stub] = []

    def make(handler: Handler) -> Stub:
        made.append(Stub(handler))
        return made[-1]

    yield make
    for server in made:
        server.close()


class Proxy:
    """A TCP forwarder to Tessera that can be cut, to play "Tessera is gone"."""

    def __init__(self, target: str) -> None:
        host, port = target.split("//", 1)[1].split(":")
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._open: List[socket.socket] = []
        self._cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._cut.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                return
            upstream = socket.create_connection(self._target)
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Closes the listener and every connection: Tessera is unreachable from now on."""
        self._cut.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
        except OSError:
            pass
        self._listener.close()
        for s in self._open:
            try:
                s.close()
            except OSError:
                pass
