"""Following Tessera's revocation feed in a background thread: catch up by cursor, then hold
the SSE stream open and apply each entry as it arrives, reconnecting with backoff. Checking a
token is then a few dictionary lookups, with no call to Tessera per request.

Kinds applied: `session` (a `sid`), `subject` (a user or client, tokens issued until
`issued_before`), `token` (a `jti`) and `tenant` (every token of the `tid` issued until
`issued_before`). An entry of an unknown kind is skipped, so a newer Tessera never stops an
older service.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional

from ._http import request_json

__all__ = ["RevocationFeed", "RevocationSet", "SseParser"]

log = logging.getLogger("tessera_client.revocations")

# Longest silence on the stream before it is taken for dead (Tessera comments every 15 s).
STREAM_IDLE = 45.0
BACKOFF_MIN = 0.25
BACKOFF_MAX = 30.0
# Longest event accepted from the stream.
MAX_EVENT_BYTES = 64 * 1024


class RevocationSet:
    """Revocations held in memory, filed under the one claim of a token that finds them."""

    def __init__(self) -> None:
        self._by_key: Dict[str, List[Dict[str, Any]]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(entry: Mapping[str, Any]) -> Optional[str]:
        kind = entry.get("kind")
        named = {"session": ("s:", "sid"), "subject": ("u:", "sub"), "token": ("t:", "jti")}
        if kind in named:
            prefix, claim = named[kind]
            value = entry.get(claim)
            return prefix + value if isinstance(value, str) else None
        if kind == "tenant":
            return "n:" + str(entry.get("tid"))
        return None

    def insert(self, entry: Mapping[str, Any], now: float, leeway: int) -> bool:
        """Adds an entry unless it ended more than `leeway` seconds ago; whether it is of a
        kind this version reads."""
        key = self._key(entry)
        if key is None or not isinstance(entry.get("tid"), str):
            return False
        expires_at = entry.get("expires_at")
        if isinstance(expires_at, int) and expires_at + leeway < now:
            return True
        with self._lock:
            held = self._by_key.setdefault(key, [])
            if entry not in held:
                held.append(dict(entry))
        return True

    def prune(self, now: float, leeway: int) -> None:
        """Forgets entries no token can outlive."""
        with self._lock:
            for key in list(self._by_key):
                kept = [e for e in self._by_key[key] if e.get("expires_at", 0) + leeway >= now]
                if kept:
                    self._by_key[key] = kept
                else:
                    del self._by_key[key]

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._by_key.values())

    @staticmethod
    def _covers(entry: Mapping[str, Any], claims: Mapping[str, Any]) -> bool:
        if claims.get("tid") != entry.get("tid"):
            return False
        kind = entry["kind"]
        if kind == "session":
            return bool(claims.get("sid") == entry["sid"])
        if kind == "token":
            return bool(claims.get("jti") == entry["jti"])
        issued_in_time = int(claims.get("iat", 0)) <= int(entry.get("issued_before", 0))
        if kind == "subject":
            return issued_in_time and claims.get("sub") == entry["sub"]
        return issued_in_time

    def covers(self, claims: Mapping[str, Any]) -> bool:
        """Whether an entry revokes a token with these claims."""
        keys = [
            "s:" + str(claims["sid"]) if claims.get("sid") is not None else None,
            "u:" + str(claims.get("sub")),
            "t:" + str(claims.get("jti")),
            "n:" + str(claims.get("tid")),
        ]
        with self._lock:
            return any(
                self._covers(entry, claims)
                for key in keys
                if key is not None
                for entry in self._by_key.get(key, ())
            )


class SseEvent:
    """One dispatched server-sent event."""

    __slots__ = ("id", "event", "data")

    def __init__(self, id: Optional[str], event: str, data: str) -> None:
        self.id = id
        self.event = event
        self.data = data


class SseParser:
    """Just enough of `text/event-stream`: `id`, `event`, `data`, comments; events end at a
    blank line. Fed line by line (without the line ending)."""

    def __init__(self) -> None:
        self._id: Optional[str] = None
        self._event: Optional[str] = None
        self._data: Optional[str] = None
        self._size = 0

    def line(self, line: str) -> Optional[SseEvent]:
        """Feeds one line; the event it completes, if any."""
        if line == "":
            self._size = 0
            data, event = self._data, self._event
            self._data = self._event = None
            # Like a browser: an event without data is not dispatched, its id still counts.
            if data is None:
                return None
            return SseEvent(self._id, event or "message", data)
        self._size += len(line)
        if self._size > MAX_EVENT_BYTES:
            raise ValueError("event too large")
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "id" and "\0" not in value:
            self._id = value
        elif name == "event":
            self._event = value
        elif name == "data":
            self._data = value if self._data is None else self._data + "\n" + value
        return None


def _lines(response: Any) -> Iterator[str]:
    """Lines of a streamed response, each ended by LF, CRLF or CR."""
    line = bytearray()
    after_cr = False
    while True:
        chunk = response.read1(65536)
        if not chunk:
            return
        for byte in chunk:
            if after_cr:
                after_cr = False
                if byte == 0x0A:
                    continue
            if byte in (0x0A, 0x0D):
                after_cr = byte == 0x0D
                yield line.decode("utf-8")
                line.clear()
            else:
                line.append(byte)
                if len(line) > MAX_EVENT_BYTES:
                    raise ValueError("line too long")


class RevocationFeed:
    """The feed as one service follows it, on a daemon thread."""

    def __init__(
        self,
        page_url: str,
        stream_url: str,
        authorization: str,
        *,
        leeway: int = 30,
        timeout: float = 10.0,
    ) -> None:
        self._page_url = page_url
        self._stream_url = stream_url
        self._authorization = authorization
        self._leeway = leeway
        self._timeout = timeout
        self.set = RevocationSet()
        self._cursor = "0"
        self._live = threading.Event()
        self._stopped = threading.Event()
        self._last_contact = 0.0
        self._socket: Any = None
        self._thread: Optional[threading.Thread] = None

    @property
    def live(self) -> bool:
        """Whether the stream is open and caught up."""
        return self._live.is_set()

    @property
    def silence(self) -> float:
        """Seconds since the feed was last heard from."""
        return time.time() - self._last_contact

    def _heard(self) -> None:
        self._last_contact = time.time()

    def _apply(self, entries: Iterable[Any]) -> None:
        now = time.time()
        for entry in entries:
            if not isinstance(entry, dict) or not self.set.insert(entry, now, self._leeway):
                log.warning("skipping a revocation this version cannot read")

    def catch_up(self) -> None:
        """Reads every page after the cursor (raises `FetchError`)."""
        while True:
            url = f"{self._page_url}?after={self._cursor}&limit=1000"
            page = request_json(url, authorization=self._authorization, timeout=self._timeout)
            self._heard()
            self._apply(page.get("items", []))
            self._cursor = str(page.get("cursor", self._cursor))
            if not page.get("has_more"):
                return

    def start(self) -> None:
        """Catches up (raising when that fails: a service that does not know what was
        revoked would accept it), then follows the stream on a daemon thread."""
        self.catch_up()
        self._thread = threading.Thread(
            target=self._follow, name="tessera-revocations", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stops following (the set stays as it is)."""
        self._stopped.set()
        self._live.clear()
        # Shut the socket down rather than close the response: closing waits for the lock the
        # reading thread holds until the next keep-alive arrives.
        sock = self._socket
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _follow(self) -> None:
        backoff = BACKOFF_MIN
        while not self._stopped.is_set():
            try:
                backoff = self._stream_once(backoff)
                log.info("revocation stream ended; reconnecting")
            except Exception as e:  # noqa: BLE001 - any failure means: reconnect
                if self._stopped.is_set():
                    return
                log.warning("revocation stream failed (%s); reconnecting", e)
            self._live.clear()
            self._stopped.wait(backoff * (1 + random.random() / 4))
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _stream_once(self, backoff: float) -> float:
        request = urllib.request.Request(self._stream_url)
        request.add_header("Authorization", self._authorization)
        request.add_header("Accept", "text/event-stream")
        request.add_header("Last-Event-ID", self._cursor)
        response = urllib.request.urlopen(request, timeout=STREAM_IDLE)
        self._socket = getattr(getattr(response.fp, "raw", None), "_sock", None)
        if self._stopped.is_set():
            response.close()
            return backoff
        try:
            if response.status != 200:
                raise OSError(f"the stream answered {response.status}")
            parser = SseParser()
            for line in _lines(response):
                self._heard()
                event = parser.line(line)
                if event is None:
                    continue
                if event.event == "revocation":
                    try:
                        self._apply([json.loads(event.data)])
                    except ValueError:
                        log.warning("skipping an unreadable revocation event")
                elif event.event == "ready":
                    self._live.set()
                    backoff = BACKOFF_MIN
                    self.set.prune(time.time(), self._leeway)
                if event.id is not None:
                    self._cursor = event.id
        finally:
            self._socket = None
            response.close()
        return backoff
