"""Permissions: `resource:action` pairs with `*` as a wildcard on either side, carried in a
token's space-separated `scope`.

The rule is Tessera's: a held wildcard grants; a requested wildcard is granted only by a held
one (holding `users:read` does not allow `users:*`). Entries that are not permissions grant
nothing.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

_PART = re.compile(r"\*|[a-z0-9_.-]{1,64}")

__all__ = ["InvalidPermission", "has_permission", "parse_permission"]


class InvalidPermission(ValueError):
    """Text that is not `resource:action`."""


def _parts(text: str) -> Optional[Tuple[str, str]]:
    resource, sep, action = text.partition(":")
    if sep and _PART.fullmatch(resource) and _PART.fullmatch(action):
        return resource, action
    return None


def parse_permission(text: str) -> Tuple[str, str]:
    """`(resource, action)`, or `InvalidPermission`."""
    parts = _parts(text)
    if parts is None:
        raise InvalidPermission(
            f"{text!r} is not a permission: expected `resource:action`, each lowercase "
            "letters, digits, `_`, `-`, `.` or `*`"
        )
    return parts


def _covers(held: str, asked: str) -> bool:
    return held == "*" or held == asked


def has_permission(scope: str, wanted: str) -> bool:
    """Whether the space-separated permissions in `scope` allow `wanted`. An invalid `wanted`
    is allowed to no one."""
    asked = _parts(wanted)
    if asked is None:
        return False
    for item in scope.split(" "):
        held = _parts(item)
        if held is not None and _covers(held[0], asked[0]) and _covers(held[1], asked[1]):
            return True
    return False
