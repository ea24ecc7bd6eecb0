"""A small FastAPI service trusting Tessera's access tokens through the `tessera-client`
package: no signing secret, no JWT code of its own.

- `GET /whoami`: any authenticated caller.
- `POST /reports`: needs `reports:write`.
- `GET /admin/stats`: needs `stats:read`.
- `GET /healthz`: open; whether revocations are being followed (for a readiness probe).
"""

from fastapi import Depends, FastAPI

from tessera_client import Identity, Verifier
from tessera_client.fastapi import TesseraAuth, install


def create_app(verifier: Verifier) -> FastAPI:
    """The service's routes, verifying with `verifier`."""
    auth = TesseraAuth(verifier)
    app = FastAPI(title="Reports")
    install(app)

    @app.get("/whoami")
    def whoami(identity: Identity = Depends(auth)) -> dict:
        return {"sub": identity.sub, "tid": identity.tid, "roles": identity.roles}

    @app.post("/reports", status_code=201)
    def create_report(identity: Identity = Depends(auth.require("reports:write"))) -> dict:
        return {"created_by": identity.sub, "tid": identity.tid}

    @app.get("/admin/stats")
    def stats(identity: Identity = Depends(auth.require("stats:read"))) -> dict:
        return {"tenant": identity.tid, "reports": 0}

    @app.get("/healthz")
    def health() -> dict:
        return dict(verifier.health())

    return app
