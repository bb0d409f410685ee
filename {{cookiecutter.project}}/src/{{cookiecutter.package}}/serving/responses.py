"""The JSON bodies the API answers with, serialised with orjson; the one shape of a refusal.

Every refusal's body has the fields of ``api_types.ErrorResponse``: ``error_response`` writes
it, and ``error_items`` and ``error_summary`` turn pydantic's errors into its items and detail;
a ``/predict`` record's problems are worded by the data rule, as every other input's are.
"""

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from .. import data

JSON = "application/json"
# The only whitespace JSON allows around a value (RFC 8259, section 2): a body of nothing else
# is empty. Python's bytes.strip() also strips vertical tabs and form feeds, which are not.
JSON_WHITESPACE = b" \t\n\r"


def json_response(content, status_code: int = 200, headers: dict | None = None) -> Response:
    """A JSON response serialised with orjson."""
    return Response(orjson.dumps(content), status_code=status_code, media_type=JSON,
                    headers=headers)


def _field(location) -> str:
    # Drop the union tag ("record"/"batch") the client never wrote.
    parts = [str(part) for part in location if part not in ("record", "batch", "body")]
    return ".".join(parts) or "body"


def _record_problem(item: Mapping[str, Any], schema: data.Schema) -> str | None:
    """The data rule's words for a problem of a ``/predict`` record's field, else None.

    Only the prediction body's union tags its locations ("record", "batch"), so another
    body's field that happens to share a feature's name keeps pydantic's words.
    """
    location = item["loc"]
    if location[:1] == ("record",) and len(location) == 2:
        name = location[1]
    elif (location[:2] == ("batch", "records") and len(location) == 4
          and isinstance(location[2], int)):
        name = location[3]
    else:
        return None
    if item["type"] == "extra_forbidden":
        return data.unexpected_field(name, schema.feature_names)
    feature = schema.feature(name)
    if feature is None:
        return None
    if item["type"] == "missing":
        return data.missing_field(name, schema.feature_names)
    return data.value_problem(feature, item["input"])


def error_items(error: ValidationError | RequestValidationError,
                schema: data.Schema = data.SCHEMA) -> list[dict]:
    """The problems of a pydantic error as ``{"field", "message"}`` items; a ``/predict``
    record's (of ``schema``) are worded by the data rule."""
    items = []
    for item in error.errors():
        message = _record_problem(item, schema) or item["msg"]
        if item["type"] == "json_invalid":
            message = f"invalid JSON: {item.get('ctx', {}).get('error', message)}"
        items.append({"field": _field(item["loc"]), "message": message})
    return items


def error_response(status_code: int, detail: str, request_id: str | None = None,
                   errors: list[dict] | None = None, headers: dict | None = None) -> Response:
    """The JSON error body of every refusal."""
    return json_response({"detail": detail, "errors": errors or [], "request_id": request_id},
                         status_code, headers)


def error_summary(items: list[dict]) -> str:
    """The ``detail`` of a 422: the first problem, and how many more there are."""
    first = items[0]
    more = f" (and {len(items) - 1} more problems)" if len(items) > 1 else ""
    return f"{first['field']}: {first['message']}{more}"
