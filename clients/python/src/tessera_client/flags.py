"""Tessera's feature flags for one evaluation context, answered from memory.

`Flags` asks Tessera's OFREP bulk endpoint (`POST /ofrep/v1/evaluate/flags`) for every flag
evaluated for its context, keeps the values, and refreshes them whenever the change stream
(`GET /ofrep/v1/events`, a `refetchEvaluation` message) says something changed, plus every
`poll_every` in case the stream is down. A refresh sends the last ETag, so one that changed
nothing is a 304 with no body.

Getters never wait on the network: they read the last values and fall back to the caller's
default for a flag never seen or of another type. When no refresh has succeeded for
`stale_after`, `stale` is True and a warning is logged once.

    tokens = ServiceTokens(issuer, client_id, client_secret, scope="flags:read")
    flags = Flags(issuer, tokens=tokens, context={"targetingKey": "worker-1"})
    flags.start()
    if flags.bool("banking_enabled", False):
        ...

The OpenFeature SDK with its OFREP provider reaches the same endpoints; this client is for
services that want typed reads with no SDK and no call per read.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from typing import Any, Callable, Dict, List, Mapping, Optional

from ._http import FetchError, post_json
from ._sse import SseEvent, StreamFollower
from .errors import SetupError
from .service_tokens import ServiceTokens

__all__ = ["Flags"]

log = logging.getLogger("tessera_client.flags")


class Flags(StreamFollower):
    """Every flag Tessera evaluates for one context, kept fresh on a daemon thread."""

    def __init__(
        self,
        issuer: str,
        *,
        tokens: Optional[ServiceTokens] = None,
        bearer: Optional[str] = None,
        context: Optional[Mapping[str, Any]] = None,
        poll_every: float = 60.0,
        stale_after: float = 300.0,
        timeout: float = 10.0,
    ) -> None:
        """Authenticates with `tokens` (a service account whose token holds `flags:read`) or
        a fixed `bearer` token; `context` is the OFREP evaluation context (`targetingKey` and
        attributes; Tessera overwrites the identity attributes with the caller's own)."""
        super().__init__("tessera-flags", log)
        if (tokens is None) == (bearer is None):
            raise SetupError("Flags needs exactly one of `tokens` and `bearer`")
        base = issuer.rstrip("/")
        self._bulk_url = base + "/ofrep/v1/evaluate/flags"
        self._events_url = base + "/ofrep/v1/events"
        self._tokens = tokens
        self._bearer = bearer
        self._body = json.dumps({"context": dict(context or {})}).encode()
        self._poll_every = poll_every
        self._stale_after = stale_after
        self._timeout = timeout
        self._values: Dict[str, Any] = {}
        self._etag: Optional[str] = None
        self._refreshed: Optional[float] = None
        self._warned_stale = False
        self._lock = threading.Lock()
        self._listeners: List[Callable[[], None]] = []
        self.refreshes = 0
        """How many refreshes changed the values (for metrics and tests)."""

    def start(self) -> None:
        """Fetches once, then follows the change stream and polls on daemon threads. A first
        fetch that fails is logged and retried: getters answer their defaults meanwhile."""
        try:
            self.refresh()
        except FetchError as e:
            log.warning("first flags fetch failed (%s); serving defaults until it works", e)
        self._follow_in_background()
        threading.Thread(target=self._poll, name="tessera-flags-poll", daemon=True).start()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Calls `listener` (on a background thread) after each refresh that changed a value."""
        self._listeners.append(listener)

    def _authorization(self) -> str:
        if self._tokens is not None:
            return f"Bearer {self._tokens.token()}"
        return f"Bearer {self._bearer}"

    def refresh(self) -> bool:
        """One bulk request with the last ETag; True when a value changed. Raises
        `FetchError` when Tessera refuses or cannot be reached."""
        with self._lock:
            try:
                status, etag, body = post_json(
                    self._bulk_url,
                    self._body,
                    authorization=self._authorization(),
                    if_none_match=self._etag,
                    timeout=self._timeout,
                )
            except FetchError as e:
                if self._tokens is not None and e.status == 401:
                    self._tokens.invalidate()
                raise
            self._refreshed = time.monotonic()
            self._warned_stale = False
            if status == 304 or body is None:
                return False
            flags = body.get("flags")
            if not isinstance(flags, list):
                raise FetchError(f"{self._bulk_url} answered without `flags`")
            values = {
                entry["key"]: entry["value"]
                for entry in flags
                if isinstance(entry, dict) and isinstance(entry.get("key"), str) and "value" in entry
            }
            changed = values != self._values
            self._values = values
            self._etag = etag
        if changed:
            self.refreshes += 1
            for listener in list(self._listeners):
                try:
                    listener()
                except Exception:  # noqa: BLE001 - a listener's bug must not stop refreshes
                    log.exception("a flags change listener failed")
        return changed

    def _try_refresh(self) -> None:
        try:
            self.refresh()
        except FetchError as e:
            log.warning("flags refresh failed (%s)", e)

    def _poll(self) -> None:
        while not self._stopped.wait(self._poll_every):
            self._try_refresh()

    def _request(self) -> urllib.request.Request:
        request = urllib.request.Request(self._events_url)
        request.add_header("Authorization", self._authorization())
        return request

    def _event(self, event: SseEvent) -> bool:
        try:
            kind = json.loads(event.data).get("type")
        except (ValueError, AttributeError):
            return False
        if kind in ("ready", "refetchEvaluation"):
            # `ready` opens every stream: whatever changed while disconnected is read then.
            self._try_refresh()
            return True
        return False

    @property
    def stale(self) -> bool:
        """Whether no refresh has succeeded for `stale_after` seconds (or none ever)."""
        refreshed = self._refreshed
        return refreshed is None or time.monotonic() - refreshed > self._stale_after

    def _read(self, key: str) -> Any:
        if self.stale and not self._warned_stale:
            self._warned_stale = True
            log.warning("serving last known flag values: no refresh succeeded lately")
        return self._values.get(key)

    def value(self, key: str) -> Any:
        """The flag's last known value, or None when it was never evaluated without error."""
        return self._read(key)

    def bool(self, key: str, default: bool) -> bool:
        """A bool flag, or `default` when unknown or not a bool."""
        value = self._read(key)
        return value if isinstance(value, bool) else default

    def string(self, key: str, default: str) -> str:
        """A string flag, or `default`."""
        value = self._read(key)
        return value if isinstance(value, str) else default

    def number(self, key: str, default: float) -> float:
        """A number flag, or `default`."""
        value = self._read(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return default
        return float(value)

    def object(self, key: str) -> Optional[Dict[str, Any]]:
        """An object flag, or None."""
        value = self._read(key)
        return value if isinstance(value, dict) else None

    def health(self) -> Dict[str, Any]:
        """`{"flags_live", "flags_stale", "flags_held"}` for a health endpoint."""
        return {"flags_live": self.live, "flags_stale": self.stale, "flags_held": len(self._values)}
