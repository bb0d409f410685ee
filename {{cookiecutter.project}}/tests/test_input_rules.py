"""One table of input cases, run through every entry point: all of them accept and refuse alike.

The entry points: the CSV loader of training data, the CLI's ``predict`` reading a JSON file
and reading a CSV file, and the API's ``POST /predict``. Each case changes one field of the
schema's example record. The rule is ``data.value_problem``; the README's "The input rules"
says it case by case.
"""

import csv
import io
import json
import math
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings as hypothesis_settings, strategies as st
from pydantic import TypeAdapter, ValidationError

from {{ cookiecutter.package }} import cli, data, logs
from {{ cookiecutter.package }}.serving import api_types, responses, service

ABSENT = object()  # the field (the CSV column) is left out
SAME = object()  # the CSV's outcome is the records' outcome
FIELDS = ", ".join(data.FEATURES)


@dataclass(frozen=True)
class Case:
    """A value of one field, and what every entry point makes of it."""

    field: str
    value: object  # as a JSON record holds it (the API's body, the CLI's JSON input)
    cell: object  # the CSV cell that holds the same value; None where no cell can
    problem: str | None  # the refusal's words; None: accepted
    accepted_as: object = SAME  # the value passed on to the model, when it differs
    csv_problem: object = SAME  # the CSV's words, where a file's shape differs from a record's

    def __str__(self):
        return f"{self.field}={'absent' if self.value is ABSENT else repr(self.value)}"


CASES = [
    # Accepted: numbers in range, whole numbers however written, categories exactly.
    Case("age", 34, "34", None),
    Case("age", 18, "18", None),
    Case("age", 100, "100", None),
    Case("age", 34.0, "34.0", None, accepted_as=34),
    Case("num_streams", 1e3, "1e3", None, accepted_as=1000),
    Case("num_streams", 0, "0", None),
    Case("country", "singapore", "singapore", None),
    Case("subscriber_type", "aavail_unlimited", "aavail_unlimited", None),
    # A number is a number: not a string, not a boolean, not a fraction for an integer.
    Case("age", "34", None, "expected an integer, got str '34'"),
    Case("age", " 34", " 34", "expected an integer, got str ' 34'"),
    Case("age", "old", "old", "expected an integer, got str 'old'"),
    Case("age", True, None, "expected an integer, got a boolean"),
    Case("age", "true", "true", "expected an integer, got str 'true'"),
    Case("age", 34.5, "34.5", "expected an integer, got float 34.5"),
    Case("age", math.inf, None, "expected an integer, got float inf"),
    Case("age", "NaN", "NaN", "expected an integer, got str 'NaN'"),
    # Missing: null, NaN, the empty string (an empty CSV cell), the field left out.
    Case("age", None, "", "value is missing"),
    Case("age", math.nan, None, "value is missing"),
    Case("age", "", "", "value is missing"),
    Case("country", None, "", "value is missing"),
    Case("country", "", "", "value is missing"),
    Case("age", ABSENT, ABSENT, f"missing field 'age' (expected fields: {FIELDS})",
         csv_problem="missing column 'age' (expected columns: "),
    # Ranges are closed and exact, whatever the number's notation or size.
    Case("age", 17, "17", "value 17 is outside the range [18, 100]"),
    Case("age", 101.0, "101.0", "value 101 is outside the range [18, 100]"),
    Case("age", 10 ** 30, str(10 ** 30), f"value {10 ** 30} is outside the range [18, 100]"),
    Case("num_streams", -1, "-1", "value -1 is outside the range [0, 1000]"),
    # Categories: a string, exactly one of the list (no trimming, no change of case).
    Case("country", "Singapore", "Singapore",
         "unknown category 'Singapore' (allowed: singapore, united_states)"),
    Case("country", " singapore", " singapore",
         "unknown category ' singapore' (allowed: singapore, united_states)"),
    Case("country", "singapore ", "singapore ",
         "unknown category 'singapore ' (allowed: singapore, united_states)"),
    Case("country", 3, None, "expected a string, got int 3"),
    Case("country", "3", "3", "unknown category '3' (allowed: singapore, united_states)"),
    Case("country", True, None, "expected a string, got a boolean"),
    Case("subscriber_type", ["aavail_basic"], None, "expected a string, got list ['aavail_basic']"),
    Case("subscriber_type", "aavail_gold", "aavail_gold", "unknown category 'aavail_gold' "
         "(allowed: aavail_basic, aavail_premium, aavail_unlimited)"),
    # A record has exactly the schema's fields; a CSV file's other columns are ignored.
    Case("customer_id", 7, "7", f"unexpected field 'customer_id' (expected fields: {FIELDS})",
         csv_problem=None),
]


def record(case: Case) -> dict:
    """The example record with the case's value."""
    changed = dict(data.SCHEMA.example)
    if case.value is ABSENT:
        del changed[case.field]
    else:
        changed[case.field] = case.value
    return changed


def csv_text(case: Case, *, with_target: bool) -> str:
    """A CSV file of one row: the example record with the case's cell."""
    cells: dict[str, object] = {name: str(value) for name, value in data.SCHEMA.example.items()}
    if case.cell is ABSENT:
        del cells[case.field]
    else:
        cells[case.field] = case.cell
    if with_target:
        cells[data.TARGET] = "1"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows([list(cells), list(cells.values())])
    return out.getvalue()


@dataclass
class Outcome:
    """What an entry point made of a case: the value passed on, or the refusal's message."""

    accepted: object = None  # the value the model got (ABSENT when the field is not one)
    message: str | None = None


def logged_value(settings, field):
    entry = logs.read_log(settings.log_dir, "predict")[-1]["input"]
    return entry.get(field, ABSENT)


def through_the_csv_loader(case, settings) -> Outcome:
    try:
        frame = data.load_csv(io.StringIO(csv_text(case, with_target=True)), name="train.csv")
    except data.DataValidationError as error:
        return Outcome(message=str(error))
    value = frame.iloc[0].to_dict().get(case.field, ABSENT)
    return Outcome(accepted=value.item() if hasattr(value, "item") else value)


def through_the_cli(case, settings, tmp_path, fmt) -> Outcome:
    path = tmp_path / f"input.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(record(case)))  # NaN and Infinity as Python's json writes
    else:
        path.write_text(csv_text(case, with_target=False))
    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdout", io.StringIO())
        patch.setattr("sys.stderr", stderr)
        status = cli.main(["predict", str(path)])
    if status != 0:
        assert status == 2, stderr.getvalue()
        return Outcome(message=stderr.getvalue())
    return Outcome(accepted=logged_value(settings, case.field))


def through_the_api(case, settings, client) -> Outcome:
    body = json.dumps(record(case)).encode()
    answer = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    if answer.status_code != 200:
        assert answer.status_code == 422, answer.text
        problem = answer.json()
        assert problem["errors"][0]["field"] == case.field
        assert problem["detail"].startswith(f"{case.field}: ")
        return Outcome(message=problem["errors"][0]["message"])
    return Outcome(accepted=logged_value(settings, case.field))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_entry_point_applies_the_same_rule(case, served_settings, tmp_path):
    outcomes = {}
    with TestClient(service.create_app(served_settings)) as client:
        outcomes["api"] = through_the_api(case, served_settings, client)
    outcomes["cli json"] = through_the_cli(case, served_settings, tmp_path, "json")
    if case.cell is not None:
        outcomes["cli csv"] = through_the_cli(case, served_settings, tmp_path, "csv")
        outcomes["csv loader"] = through_the_csv_loader(case, served_settings)

    def expected(entry):
        tabular = entry in ("cli csv", "csv loader")
        problem = case.csv_problem if tabular and case.csv_problem is not SAME else case.problem
        if problem is not None:
            return "refused", problem
        value = ABSENT if tabular and case.field not in data.FEATURES else (
            case.value if case.accepted_as is SAME else case.accepted_as)
        return "accepted", value

    def verdict(entry, outcome):
        if outcome.message is None:
            return "accepted", outcome.accepted
        kind, problem = expected(entry)
        # The message names the field (or column) and says the problem in the rule's words.
        if kind == "refused" and problem in outcome.message and case.field in outcome.message:
            return "refused", problem
        return "refused", outcome.message

    seen = {entry: verdict(entry, outcome) for entry, outcome in outcomes.items()}
    assert seen == {entry: expected(entry) for entry in outcomes}
    for entry, outcome in outcomes.items():  # an accepted integer reaches the model as an int
        if outcome.message is None and isinstance(outcome.accepted, (int, float)):
            assert type(outcome.accepted) is type(expected(entry)[1]), entry


# Every kind of feature a schema can have, the float one included (the example has none).
KINDS = data.Schema(
    features=(
        data.CategoricalFeature("plan", ("basic", "premium")),
        data.NumericFeature("age", 18, 100, integer=True),
        data.NumericFeature("ratio", 0.0, 1.0, integer=False),
        data.NumericFeature("balance", -1e6, 1e6, integer=False),
    ),
    target="y", target_description="", classes=(0, 1),
    example={"plan": "basic", "age": 30, "ratio": 0.5, "balance": 0.0},
)
any_value = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-2, 120),
    st.floats(), st.floats(-2, 120).map(round), st.floats(-2, 120).map(lambda x: float(round(x))),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=6),  # JSON holds no lone surrogate
    st.sampled_from(["basic", " basic", "Basic", "", "30", "0.5"]),
    st.lists(st.integers(), max_size=2),
)


# The body of ``POST /predict`` for a schema, as the service builds it: the documented type and
# the strict twins it tries first.
BODY_TYPES = api_types.predict_body_types(10, KINDS)
DOCUMENTED, STRICT_RECORD, STRICT_BATCH = (
    TypeAdapter(kind) for kind in (BODY_TYPES.documented, BODY_TYPES.record, BODY_TYPES.batch))


@hypothesis_settings(max_examples=1500, deadline=None)
@given(st.sampled_from(KINDS.features), any_value)
def test_the_api_request_type_accepts_exactly_what_the_rule_accepts(feature, value):
    """For every kind of feature and any JSON value: the request type accepts it when
    ``data.value_problem`` does and passes on ``data.schema_value`` of it, or refuses it in the
    rule's words; the strict twins the service tries first accept nothing more."""
    body = json.dumps({**KINDS.example, feature.name: value})
    problem = data.value_problem(feature, value)
    try:
        passed_on = DOCUMENTED.validate_json(body)[feature.name]
    except ValidationError as error:
        assert problem is not None, f"the API refuses {value!r}: {error}"
        first = responses.error_items(error, KINDS)[0]
        assert first == {"field": feature.name, "message": problem}
    else:
        assert problem is None, f"the API accepts {value!r}; the rule: {problem}"
        expected = data.schema_value(feature, value)
        assert passed_on == expected and type(passed_on) is type(expected)
    for twin, twin_body in ((STRICT_RECORD, body), (STRICT_BATCH, '{"records": [' + body + "]}")):
        try:
            twin.validate_json(twin_body)
        except ValidationError:
            pass
        else:
            assert problem is None, f"a strict twin accepts {value!r}; the rule: {problem}"
