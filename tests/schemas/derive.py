"""Regenerate ``marketo.schema.json`` from Marketo's OpenAPI (Swagger 2.0) definitions.

Usage: python tests/schemas/derive.py ../shared/marketo-openapi > tests/schemas/marketo.schema.json

Field names and types are copied from Adobe's ``swagger-mapi.json`` and ``swagger-identity.json``
(Apache-2.0). Four deliberate departures, each because real responses differ from the SPEC:
- ``errors`` and ``warnings`` are not required (real responses omit them when empty);
- ``id`` is not required on Activity and LeadChange (the SPEC's own description says it may be
  absent on instances migrated to Activity Service; ``marketoGUID`` is the key);
- ``Attribute.value`` may be any JSON type (the SPEC says "object"; real values are strings and
  numbers, e.g. ``"Lead ID": 775``);
- every object is closed (``additionalProperties: false``) so a simulator field that the SPEC
  does not define fails the test; that is a tightening for our tests, not a Marketo rule;
  ``Lead`` stays open: the SPEC says it "may have any number of other fields" (the instance's).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEFINITIONS = (
    "ResponseOfActivity",
    "Activity",
    "Attribute",
    "ResponseOfLeadChange",
    "LeadChange",
    "LeadChangeField",
    "ResponseOfActivityType",
    "ActivityType",
    "ActivityTypeAttribute",
    "ResponseOfVoid",
    "ResponseOfUsageData",
    "UsageData",
    "UserCount",
    "ResponseOfLeadAttribute",
    "LeadAttribute",
    "LeadMapAttribute",
    "ResponseOfLeadAttribute2",
    "LeadAttribute2",
    "LeadAttribute2SearchableFields",
    "LeadAttribute2Fields",
    "ResponseOfLead",
    "Lead",
    "ProgramMembership",
    "Reason",
    "Error",
    "Warning",
)


def convert(node: object) -> object:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("description", "example") and not isinstance(value, dict):
                continue  # annotations, not the ``description`` property of ActivityType
            if key == "$ref":
                out[key] = value.replace("#/definitions/", "#/$defs/")
            else:
                out[key] = convert(value)
        return out
    if isinstance(node, list):
        return [convert(v) for v in node]
    return node


def main(folder: str) -> None:
    mapi = json.loads((Path(folder) / "swagger-mapi.json").read_text())["definitions"]
    identity = json.loads((Path(folder) / "swagger-identity.json").read_text())["definitions"]
    defs: dict[str, dict] = {}
    for name in DEFINITIONS:
        defs[name] = convert(mapi[name])  # type: ignore[assignment]
    defs["ResponseOfIdentity"] = convert(identity["ResponseOfIdentity"])  # type: ignore[assignment]
    for name, schema in defs.items():
        if "$ref" in schema.get("properties", {}).get("primaryAttribute", {}):
            schema["properties"]["primaryAttribute"] = {
                "$ref": schema["properties"]["primaryAttribute"]["$ref"]
            }
        if name.startswith("ResponseOf"):
            schema["required"] = [r for r in schema["required"] if r not in ("errors", "warnings")]
        if schema.get("type") == "object":
            schema["additionalProperties"] = False
    defs["Attribute"]["properties"]["value"] = {}
    defs["Lead"]["additionalProperties"] = True  # "may have any number of other fields"
    for name in ("Activity", "LeadChange"):
        defs[name]["required"] = [r for r in defs[name]["required"] if r != "id"]
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": "Derived by tests/schemas/derive.py from Adobe's marketo-apis OpenAPI files "
        "(Apache-2.0); see that script for the four departures.",
        "$defs": defs,
    }
    json.dump(document, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/marketo-openapi")
