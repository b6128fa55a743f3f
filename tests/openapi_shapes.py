"""Check simulator responses against the shapes Marketo's OpenAPI files document.

The schemas live in tests/schemas/marketo.schema.json, derived from Adobe's swagger-mapi.json
and swagger-identity.json by tests/schemas/derive.py (which lists the four departures: errors
and warnings optional, ``id`` optional, attribute values of any type, closed objects).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA_FILE = Path(__file__).parent / "schemas" / "marketo.schema.json"

#: Which documented response shape each simulator path answers with.
SHAPE_BY_PATH = {
    "/rest/v1/activities.json": "ResponseOfActivity",
    "/rest/v1/activities/deletedleads.json": "ResponseOfActivity",
    "/rest/v1/activities/leadchanges.json": "ResponseOfLeadChange",
    "/rest/v1/activities/types.json": "ResponseOfActivityType",
    "/rest/v1/activities/pagingtoken.json": "ResponseOfVoid",
    "/rest/v1/stats/usage.json": "ResponseOfUsageData",
    "/rest/v1/leads/describe.json": "ResponseOfLeadAttribute",
    "/rest/v1/leads/describe2.json": "ResponseOfLeadAttribute2",
    "/rest/v1/leads.json": "ResponseOfLead",
    "/identity/oauth/token": "ResponseOfIdentity",
}


@cache
def validator(definition: str) -> Draft202012Validator:
    document = json.loads(SCHEMA_FILE.read_text())
    schema = {"$defs": document["$defs"], "$ref": f"#/$defs/{definition}"}
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def shape_errors(body: Any, definition: str) -> list[str]:
    """Every way ``body`` departs from the documented ``definition`` (empty when it fits)."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator(definition).iter_errors(body)
    ]


def assert_shape(body: Any, definition: str) -> None:
    errors = shape_errors(body, definition)
    assert not errors, f"{definition}: " + "; ".join(errors[:5])
