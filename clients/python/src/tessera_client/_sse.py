"""Server-sent events from Tessera on a daemon thread: a parser for just enough of
`text/event-stream`, and `StreamFollower`, which holds one stream open and reconnects with
jittered backoff until stopped. The revocation feed and the flags client both follow theirs
with it."""

from __future__ import annotations

import logging
import random
import socket
import threading
import urllib.request
from typing import Any, Iterator, Optional

# Longest silence on a stream before it is taken for dead (Tessera comments every 15 s).
STREAM_IDLE = 45.0
BACKOFF_MIN = 0.25
BACKOFF_MAX = 30.0
# Longest event accepted from a stream.
MAX_EVENT_BYTES = 64 * 1024

__all__ = ["SseEvent", "SseParser", "StreamFollower"]


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


class StreamFollower:
    """Follows one SSE stream on a daemon thread. Subclasses say what to request and what
    each event means; `_event` returns True once the stream has proven itself (it resets the
    backoff and marks the follower live)."""

    def __init__(self, thread_name: str, log: logging.Logger) -> None:
        self._thread_name = thread_name
        self._log = log
        self._live = threading.Event()
        self._stopped = threading.Event()
        self._socket: Any = None
        self._thread: Optional[threading.Thread] = None

    @property
    def live(self) -> bool:
        """Whether the stream is open (and, where that applies, caught up)."""
        return self._live.is_set()

    def _request(self) -> urllib.request.Request:
        raise NotImplementedError

    def _event(self, event: SseEvent) -> bool:
        raise NotImplementedError

    def _heard(self) -> None:
        """Called for every line read, comments included."""

    def _follow_in_background(self) -> None:
        self._thread = threading.Thread(target=self._follow, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops following."""
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
                self._log.info("%s: stream ended; reconnecting", self._thread_name)
            except Exception as e:  # noqa: BLE001 - any failure means: reconnect
                if self._stopped.is_set():
                    return
                self._log.warning("%s: stream failed (%s); reconnecting", self._thread_name, e)
            self._live.clear()
            self._stopped.wait(backoff * (1 + random.random() / 4))
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _stream_once(self, backoff: float) -> float:
        request = self._request()
        request.add_header("Accept", "text/event-stream")
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
                if event is not None and self._event(event):
                    self._live.set()
                    backoff = BACKOFF_MIN
        finally:
            self._socket = None
            response.close()
        return backoff
