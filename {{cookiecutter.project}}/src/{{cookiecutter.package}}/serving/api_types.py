"""The API's request and response types, as the OpenAPI document describes them.

The request types are generated from ``data.SCHEMA``, so the API validates exactly the
features the model takes, by the rule every other input follows (``data.value_problem``);
the same types document ``POST /predict`` in the OpenAPI schema. Every refusal has one body,
``ErrorResponse`` (``responses.error_response`` writes it; a refused record's problems are in
the data rule's words, as the CLI and the CSV loader word them).
"""

import functools
from typing import Annotated, Any, Literal, NamedTuple, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    Tag,
)
from typing_extensions import TypedDict  # pydantic's TypedDict support needs it on Python < 3.12

from .. import data


# ----------------------------------------------------------------------------- request types

def record_model(*, whole_floats: bool = True, schema: data.Schema = data.SCHEMA) -> type:
    """The request type of one record, generated from ``schema`` (``data.SCHEMA``).

    It accepts what ``data.value_problem`` accepts, enforced by pydantic-core's own checks:
    exact fields; strict types, so booleans and numeric strings are not numbers and a null
    or an empty string is no category; categories a closed set, compared exactly; numbers in
    their range; no NaN or infinity. An integer written 12.0 is the integer 12, as JSON
    Schema (the documented contract) and the data rule count it; the row passed on holds the
    int (``data.schema_value``). ``whole_floats=False`` leaves that out: no Python callback
    per value, so validation runs in pydantic-core alone, twice as fast (the service tries
    that type first). A TypedDict rather than a model: validation yields the plain dicts
    prediction takes.
    """
    fields = {}
    for feature in schema.features:
        if isinstance(feature, data.CategoricalFeature):
            kind: Any = Literal[feature.categories]  # a type made at run time
            fields[feature.name] = Annotated[kind, Field(description=feature.description)]
        else:
            limits = Field(ge=feature.minimum, le=feature.maximum,
                           description=feature.description)
            if feature.integer:
                whole = functools.partial(data.schema_value, feature)
                accept = [BeforeValidator(whole)] if whole_floats else []
                fields[feature.name] = Annotated[(StrictInt, limits, *accept)]
            else:  # a float feature takes whole numbers too, but never NaN or infinity
                fields[feature.name] = Annotated[float, limits, Field(allow_inf_nan=False)]
    # mypy checks a TypedDict written out in the source only, not one built from the schema.
    record = TypedDict("Record", fields)  # type: ignore[misc]
    record.__pydantic_config__ = ConfigDict(  # type: ignore[attr-defined]
        extra="forbid", strict=True, json_schema_extra={"examples": [schema.example]})
    return record


def batch_model(record: type, max_rows: int) -> type:
    """The request type of a batch: ``{"records": [record, ...]}`` of 1 to ``max_rows``."""
    rows = Field(min_length=1, max_length=max_rows)
    fields = {"records": Annotated[list[record], rows]}  # type: ignore[valid-type]
    batch = TypedDict("Batch", fields)  # type: ignore[misc]  # as in record_model
    batch.__pydantic_config__ = ConfigDict(  # type: ignore[attr-defined]
        extra="forbid", strict=True,
        json_schema_extra={"examples": [{"records": [data.SCHEMA.example]}]})
    return batch


def _request_kind(payload) -> str:
    # Choosing the branch up front keeps error messages about the body the client meant.
    return "batch" if isinstance(payload, dict) and "records" in payload else "record"


def predict_request_type(record: type, batch: type):
    """The body of ``POST /predict``: one record or a batch."""
    return Annotated[
        Union[Annotated[record, Tag("record")], Annotated[batch, Tag("batch")]],
        Discriminator(_request_kind),
    ]


class PredictBodyTypes(NamedTuple):
    """The types of a ``POST /predict`` body: the documented one and its two strict twins.

    ``documented`` is the contract: the OpenAPI document shows it, it alone decides what is
    refused, and its errors word the 422. ``record`` and ``batch`` are strict twins of its two
    branches without ``whole_floats`` (no Python callback per value, nor a discriminator per
    body): they accept nothing the contract refuses and validate in pydantic-core alone, so
    the service tries the one the body looks like first.
    """

    documented: Any
    record: type
    batch: type


def predict_body_types(max_rows: int, schema: data.Schema = data.SCHEMA) -> PredictBodyTypes:
    """The documented body of ``POST /predict`` and its strict twins, for batches of at most
    ``max_rows`` records of ``schema``."""
    record = record_model(schema=schema)
    strict = record_model(whole_floats=False, schema=schema)
    return PredictBodyTypes(documented=predict_request_type(record, batch_model(record, max_rows)),
                            record=strict, batch=batch_model(strict, max_rows))


class PredictResponse(BaseModel):
    """Predictions of the requested rows, in request order."""

    request_id: str = Field(description="The X-Request-ID header's value, or a new id.")
    model_version: str
    predictions: list[int] = Field(description="Predicted class of each row.")
    probabilities: list[float] = Field(description="Probability of class 1 of each row.")


class ErrorItem(BaseModel):
    """One problem of a request."""

    field: str = Field(description="Where the problem is, e.g. records.3.age.")
    message: str


class ErrorResponse(BaseModel):
    """Why a request was refused."""

    detail: str = Field(description="What is wrong, in one sentence.")
    errors: list[ErrorItem] = Field(default_factory=list)
    request_id: str | None = None


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Whether the model is loaded and its self-check passed."""

    ready: bool
    model_version: str | None = None
    reason: str | None = None


class ModelInfo(BaseModel):
    """The served model version and what is known about it."""

    name: str
    model_version: str
    note: str | None = None
    trained_at: str | None = None
    metrics: dict = Field(default_factory=dict)
    data: dict = Field(default_factory=dict)


class TrainRequest(BaseModel):
    """Options of a training run."""

    model_config = ConfigDict(extra="forbid", strict=True)

    test_mode: StrictBool = Field(
        False, description="Train a throw-away test model; the served model stays."
    )


class TrainResponse(BaseModel):
    """What a training run stored."""

    name: str
    model_version: str
    test_mode: bool
    trained_at: str | None = None
    metrics: dict = Field(default_factory=dict)


class LogFile(BaseModel):
    """A log file that ``GET /logs/{name}`` serves."""

    name: str
    bytes: int


ERRORS = {
    401: {"model": ErrorResponse, "description": "Missing or wrong bearer token."},
    404: {"model": ErrorResponse, "description": "Not found."},
    413: {"model": ErrorResponse, "description": "Request body too large."},
    422: {"model": ErrorResponse, "description": "Invalid request; the message names the field."},
    503: {"model": ErrorResponse, "description": "No model is loaded."},
}


def documented_errors(*codes: int) -> dict:
    """The ``responses`` entries of an endpoint that refuses with these status codes."""
    return {code: ERRORS[code] for code in codes}
