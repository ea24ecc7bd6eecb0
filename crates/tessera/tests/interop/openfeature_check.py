"""The official OpenFeature Python SDK with its OFREP provider, evaluating Tessera's flags.

Reads {"base_url", "tokens": {name: bearer token}} on stdin and prints, for each token, the
details of a fixed set of evaluations as JSON, for the integration test to compare.
"""

import json
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext


def details(result):
    return {
        "value": result.value,
        "reason": str(result.reason.value if hasattr(result.reason, "value") else result.reason),
        "variant": result.variant,
        "error_code": result.error_code.value if result.error_code else None,
    }


def evaluate(client):
    context = EvaluationContext(targeting_key="user-7", attributes={"plan": "pro"})
    return {
        "bool": details(client.get_boolean_details("dark_mode", True, context)),
        "string": details(client.get_string_details("banner_text", "code", context)),
        "number": details(client.get_float_details("max_upload_mb", 0.0, context)),
        "object": details(client.get_object_details("theme", {}, context)),
        "missing": details(client.get_boolean_details("no_such_flag", True, context)),
    }


def main():
    request = json.load(sys.stdin)
    results = {}
    for name, token in request["tokens"].items():
        provider = OFREPProvider(
            request["base_url"],
            headers_factory=lambda token=token: {"Authorization": f"Bearer {token}"},
        )
        api.set_provider(provider, domain=name)
        results[name] = evaluate(api.get_client(domain=name))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
