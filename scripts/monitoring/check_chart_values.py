"""The chart's sidecar defaults agree with the ShardedService CRD.

Usage: check_chart_values.py CHART CRD.yaml

`sidecar.resilience` in values.yaml must validate against the CRD's schema
for `spec.resilience` (field names and ranges of the sidecar config type) and
equal the CRD's defaults (the defaults of DESIGN.md), so that a user who
reads values.yaml sees what a ShardedService gets when it says nothing.
"""

import sys
from pathlib import Path

import jsonschema
import yaml


def unknown_keys(value, schema, at):
    """Keys of VALUE the schema does not declare (the API server would prune them)."""
    out = []
    if isinstance(value, dict) and "properties" in schema:
        for k, v in value.items():
            if k not in schema["properties"]:
                out.append(f"{at}.{k}: not a field of the CRD (it would be silently dropped)")
            else:
                out.extend(unknown_keys(v, schema["properties"][k], f"{at}.{k}"))
    return out


def main():
    chart, crd_path = Path(sys.argv[1]), Path(sys.argv[2])
    if not crd_path.exists():
        print(f"chart values check skipped: {crd_path} does not exist yet")
        return 0
    values = yaml.safe_load((chart / "values.yaml").read_text())
    crd = yaml.safe_load(crd_path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    schema = spec["resilience"]
    ours = values["sidecar"]["resilience"]
    problems = [f"sidecar.resilience{''.join(f'.{p}' for p in e.absolute_path)}: {e.message}"
                for e in jsonschema.Draft7Validator(schema).iter_errors(ours)]
    problems += unknown_keys(ours, schema, "sidecar.resilience")
    default = schema.get("default", {})
    for section, fields in default.items():
        for key, want in fields.items():
            got = ours.get(section, {}).get(key)
            if got is not None and got != want:
                problems.append(f"sidecar.resilience.{section}.{key} = {got}, but the CRD default is {want}")
    for p in problems:
        print(f"FAIL {p}")
    print(f"sidecar.resilience checked against {crd_path} (schema and defaults): {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
