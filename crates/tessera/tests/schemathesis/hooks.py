"""Schemathesis hooks for Tessera's fuzzing run (loaded through SCHEMATHESIS_HOOKS).

A client gives every distinct request its own `Idempotency-Key`; the same key with another
request is refused (422 `idempotency_key_reused`) by design. The generator, left alone, reuses
a few short keys across different bodies, which would turn that rule into false failures of
the positive-data check. So a well-formed key becomes a fresh one per request; a malformed
one (the negative cases) is sent as generated.
"""

import re
import uuid

import schemathesis

WELL_FORMED = re.compile(r"[!-~]{1,255}")


@schemathesis.hook
def before_call(context, case, **kwargs):
    headers = case.headers or {}
    for name, value in headers.items():
        if name.lower() == "idempotency-key" and isinstance(value, str) and WELL_FORMED.fullmatch(value):
            headers[name] = str(uuid.uuid4())
