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
import threading
import time
import urllib.request
from typing import Any, Dict, Iterable, List, Mapping, Optional

from ._http import request_json
from ._sse import SseEvent, SseParser, StreamFollower

__all__ = ["RevocationFeed", "RevocationSet", "SseParser"]

log = logging.getLogger("tessera_client.revocations")

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


class RevocationFeed(StreamFollower):
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
        super().__init__("tessera-revocations", log)
        self._page_url = page_url
        self._stream_url = stream_url
        self._authorization = authorization
        self._leeway = leeway
        self._timeout = timeout
        self.set = RevocationSet()
        self._cursor = "0"
        self._last_contact = 0.0

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
        self._follow_in_background()

    def _request(self) -> urllib.request.Request:
        request = urllib.request.Request(self._stream_url)
        request.add_header("Authorization", self._authorization)
        request.add_header("Last-Event-ID", self._cursor)
        return request

    def _event(self, event: SseEvent) -> bool:
        ready = False
        if event.event == "revocation":
            try:
                self._apply([json.loads(event.data)])
            except ValueError:
                log.warning("skipping an unreadable revocation event")
        elif event.event == "ready":
            ready = True
            self.set.prune(time.time(), self._leeway)
        if event.id is not None:
            self._cursor = event.id
        return ready
