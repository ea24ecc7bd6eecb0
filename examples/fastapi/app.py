"""A small FastAPI service trusting Tessera's access tokens through `tessera_auth`.

    TESSERA_ISSUER=http://127.0.0.1:8080 TESSERA_AUDIENCE=platform uvicorn app:app --port 8000
"""

import os

from fastapi import Depends, FastAPI

from tessera_auth import Identity, TesseraAuth, TesseraAuthError, problem_response

auth = TesseraAuth(
    issuer=os.environ.get("TESSERA_ISSUER", "http://127.0.0.1:8080"),
    audience=os.environ.get("TESSERA_AUDIENCE", "platform"),
)

app = FastAPI(title="Reports")
app.add_exception_handler(TesseraAuthError, problem_response)


@app.get("/whoami")
def whoami(identity: Identity = Depends(auth)) -> dict:
    return {"sub": identity.sub, "tid": identity.tid, "roles": identity.roles}


@app.post("/reports", status_code=201)
def create_report(identity: Identity = Depends(auth.require("reports:write"))) -> dict:
    return {"created_by": identity.sub, "tid": identity.tid}
