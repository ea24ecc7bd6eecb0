"""Runs the example service, configured from the environment:

    TESSERA_ISSUER=http://127.0.0.1:8080 TESSERA_AUDIENCE=platform \\
    TESSERA_CLIENT_ID=... TESSERA_CLIENT_SECRET=tss_... uvicorn app:app --port 8000

Without the client credentials tokens are still verified, but a revoked session is accepted
until its token expires; with them (a service account allowed `tokens:introspect`) a logout
anywhere is refused here within a second.
"""

import os

from service import create_app
from tessera_client import Verifier

verifier = Verifier.start(
    issuer=os.environ.get("TESSERA_ISSUER", "http://127.0.0.1:8080"),
    audience=os.environ.get("TESSERA_AUDIENCE", "platform"),
    client_id=os.environ.get("TESSERA_CLIENT_ID"),
    client_secret=os.environ.get("TESSERA_CLIENT_SECRET"),
)
app = create_app(verifier)
