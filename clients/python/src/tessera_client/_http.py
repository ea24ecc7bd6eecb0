"""HTTP reads from Tessera with the standard library: bounded in size and time, credentials
never in a message."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import quote_plus, urlencode

# Longest metadata, JWKS, feed page or introspection answer read.
MAX_BODY_BYTES = 4 * 1024 * 1024
# How long one request may take (the revocation stream has its own idle limit).
REQUEST_TIMEOUT = 10.0


class FetchError(Exception):
    """A request to Tessera failed; the message names the URL and what went wrong, `status`
    the HTTP status when Tessera answered one."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


def basic_credentials(client_id: str, secret: str) -> str:
    """`client_secret_basic`: each part form-encoded (RFC 6749 §2.3.1), then base64."""
    pair = f"{quote_plus(client_id, safe='*')}:{quote_plus(secret, safe='*')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def _read(response: Any, url: str) -> bytes:
    body: bytes = response.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise FetchError(f"{url} answered more than {MAX_BODY_BYTES} bytes")
    return body


def request_json(
    url: str,
    *,
    authorization: Optional[str] = None,
    form: Optional[Mapping[str, str]] = None,
    timeout: float = REQUEST_TIMEOUT,
) -> Dict[str, Any]:
    """GETs `url` (or POSTs `form`) and parses the JSON answer; any status but 200 is an
    error naming it."""
    data = urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if form else "GET")
    request.add_header("Accept", "application/json")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = _read(response, url)
    except urllib.error.HTTPError as e:
        raise FetchError(f"{url} answered {e.code}", e.code) from None
    except (OSError, ValueError) as e:
        raise FetchError(f"{url} cannot be reached: {e}") from None
    return _object(body, url)


def _object(body: bytes, url: str) -> Dict[str, Any]:
    """`body` parsed as a JSON object, or an error naming `url`."""
    try:
        parsed = json.loads(body)
    except ValueError:
        raise FetchError(f"{url} answered unreadable JSON") from None
    if not isinstance(parsed, dict):
        raise FetchError(f"{url} answered JSON that is not an object")
    return parsed


def post_json(
    url: str,
    body: bytes,
    *,
    authorization: Optional[str] = None,
    if_none_match: Optional[str] = None,
    timeout: float = REQUEST_TIMEOUT,
) -> Tuple[int, Optional[str], Optional[Dict[str, Any]]]:
    """POSTs a JSON `body`; returns the status, the `ETag` and the parsed object (None for a
    304). Any other status than 200 or 304 is an error naming it."""
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Accept", "application/json")
    request.add_header("Content-Type", "application/json")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    if if_none_match is not None:
        request.add_header("If-None-Match", if_none_match)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = _read(response, url)
            status, etag = response.status, response.headers.get("ETag")
    except urllib.error.HTTPError as e:
        if e.code == 304:
            return 304, e.headers.get("ETag"), None
        raise FetchError(f"{url} answered {e.code}", e.code) from None
    except (OSError, ValueError) as e:
        raise FetchError(f"{url} cannot be reached: {e}") from None
    return status, etag, _object(raw, url)
