"""Drives examples/fastapi (built on the `tessera-client` package) in-process with FastAPI's
TestClient, for the integration tests.

  python3 fastapi_driver.py EXAMPLE_DIR < cases.json

Input: {"issuer", "audience", "requests": [{"method", "path", "headers": [[name, value]]}],
"permissions": [[scope, wanted]]}. Output: {"responses": [{"status", "headers", "body"}],
"permissions": [bool]}, in the same order; the test asserts on them.
"""
import json
import sys

from fastapi.testclient import TestClient

REPORTED_HEADERS = ("content-type", "www-authenticate", "cache-control")


def main(example_dir):
    cases = json.load(sys.stdin)
    sys.path.insert(0, example_dir)
    sys.dont_write_bytecode = True  # leave no __pycache__ in examples/
    import service
    from tessera_client import Verifier, has_permission

    verifier = Verifier.start(issuer=cases["issuer"], audience=cases["audience"])
    responses = []
    with TestClient(service.create_app(verifier)) as client:
        for request in cases["requests"]:
            response = client.request(
                request["method"],
                request["path"],
                headers=[tuple(pair) for pair in request["headers"]],
            )
            responses.append(
                {
                    "status": response.status_code,
                    "headers": {
                        name: response.headers[name]
                        for name in REPORTED_HEADERS
                        if name in response.headers
                    },
                    "body": response.json(),
                }
            )
    permissions = [has_permission(scope, wanted) for scope, wanted in cases["permissions"]]
    print(json.dumps({"responses": responses, "permissions": permissions}))


if __name__ == "__main__":
    main(*sys.argv[1:])
