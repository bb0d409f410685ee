"""Property-based fuzzing of the API against its own OpenAPI schema (schemathesis, in-process).

For every operation schemathesis generates requests that fit the schema and requests that
break it, sends them to the ASGI app and checks that no answer is a 5xx and that every answer
conforms to the documented status codes, content types and schemas. The number of cases run
is printed with the test.
"""

import collections

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings as hypothesis_settings
from schemathesis import GenerationMode

from {{ cookiecutter.package }}.config import Settings
from {{ cookiecutter.package }}.serving import service

TOKEN = "fuzzing-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Per operation; a bound keeps `make test` quick while still probing each input rule.
MAX_EXAMPLES = 60
# /train trains at every valid request (a second each with one candidate): fewer cases.
MAX_TRAIN_EXAMPLES = 8
CASES: collections.Counter[str] = collections.Counter()


@pytest.fixture
def api_schema(served_settings):
    """The schema of an app with a trained model and the admin endpoints on."""
    app = service.create_app(Settings(**{**served_settings.model_dump(), "admin_token": TOKEN}))
    app.state.model.load()  # what the app's startup does
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid-requests", "invalid-requests"])
def test_every_answer_honours_the_schema_and_none_is_a_server_error(
        api_schema, mode, capsys, quick_training):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 7
    for operation in operations:
        takes_input = bool(operation.body or operation.path_parameters or operation.query)
        if mode is GenerationMode.NEGATIVE and not takes_input:
            continue  # nothing to break
        examples = MAX_TRAIN_EXAMPLES if operation.path == "/train" else MAX_EXAMPLES

        @given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis_settings(max_examples=examples, deadline=None, database=None,
                             suppress_health_check=list(HealthCheck))
        def honours_the_schema(case):
            CASES[f"{case.operation.label} ({mode.value})"] += 1
            case.call_and_validate(headers=AUTH)

        honours_the_schema()
    cases = {label: n for label, n in CASES.items() if label.endswith(f"({mode.value})")}
    with capsys.disabled():  # the count shows in every run, not only on failure
        print(f"\nschemathesis, {mode.value} mode: {sum(cases.values())} cases: "
              + ", ".join(f"{label.rsplit(' (', 1)[0]} {n}" for label, n in sorted(cases.items())))
