"""Reference rollout buckets from the Python `mmh3` package: flagd's `fractional` over
`flag key + targeting key` scaled into 0..100000. Reads [[flag, key], ...] on stdin and prints
the buckets as a JSON list."""

import json
import sys

import mmh3

pairs = json.load(sys.stdin)
print(json.dumps([(mmh3.hash(flag + key, signed=False) * 100000) >> 32 for flag, key in pairs]))
