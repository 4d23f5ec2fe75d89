#!/usr/bin/env python3
"""Validate a compose file (argv[1], or stdin) against the vendored Compose Specification schema.

Parsed with PyYAML (an independent YAML parser) and checked with jsonschema (Draft 7, as the
schema declares). Prints each violation with its path; exit 1 when there is any.
"""
import json
import os
import sys

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    text = open(sys.argv[1]).read() if len(sys.argv) > 1 else sys.stdin.read()
    doc = yaml.safe_load(text)
    with open(os.path.join(HERE, "fixtures", "compose-spec.json")) as f:
        schema = json.load(f)
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    for e in errors:
        path = "/".join(str(p) for p in e.absolute_path) or "(root)"
        print(f"{path}: {e.message}")
    if not errors:
        print(f"valid: {len(doc.get('services', {}))} services")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
