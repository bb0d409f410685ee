"""Data ingestion: the default data set, record validation, the CSV loader, fingerprints."""

import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from {{ cookiecutter.package }} import data
from {{ cookiecutter.package }}.data import DataValidationError

EXAMPLE = data.SCHEMA.example


def record(**changes):
    """The schema's example record with some fields changed (None deletes a field)."""
    result = dict(EXAMPLE)
    for name, value in changes.items():
        result[name] = value
    return result


def test_default_dataset_is_the_same_for_the_same_seed():
    pd.testing.assert_frame_equal(data.make_default_dataset(200, seed=1),
                                  data.make_default_dataset(200, seed=1))


def test_default_dataset_changes_with_the_seed():
    assert not data.make_default_dataset(200, seed=1).equals(data.make_default_dataset(200, seed=2))


def test_default_dataset_satisfies_the_schema():
    frame = data.make_default_dataset()
    assert list(frame.columns) == data.FEATURES + [data.TARGET]
    assert len(frame) == 1000
    pd.testing.assert_frame_equal(data.validate_dataset(frame), frame)


def test_default_dataset_has_both_classes():
    assert set(data.make_default_dataset()[data.TARGET]) == {0, 1}


@pytest.mark.parametrize("n_rows", [0, -3, 2.5, True])
def test_default_dataset_refuses_a_bad_row_count(n_rows):
    with pytest.raises(ValueError, match="n_rows"):
        data.make_default_dataset(n_rows)


def test_schema_example_is_a_valid_record():
    assert data.validate_rows(EXAMPLE) == [EXAMPLE]


def test_schema_describes_feature_kinds_and_dtypes():
    assert [f.name for f in data.SCHEMA.categorical] == ["country", "subscriber_type"]
    assert [f.name for f in data.SCHEMA.numeric] == ["age", "num_streams"]
    assert data.SCHEMA.dtypes["age"] == "int64"
    assert data.SCHEMA.dtypes["country"] == "object"


def test_a_record_becomes_a_one_row_frame_in_schema_order():
    frame = data.validate_records(dict(reversed(list(EXAMPLE.items()))))
    assert list(frame.columns) == data.FEATURES
    assert frame.iloc[0].to_dict() == EXAMPLE
    assert frame["age"].dtype == "int64"


def test_a_list_of_records_becomes_a_frame():
    assert len(data.validate_records([EXAMPLE, EXAMPLE, EXAMPLE])) == 3


def test_a_frame_of_records_is_validated_and_reordered():
    frame = pd.DataFrame([EXAMPLE] * 2)[list(reversed(data.FEATURES))]
    assert list(data.validate_records(frame).columns) == data.FEATURES


def test_an_array_holds_rows_in_schema_order():
    row = [EXAMPLE[name] for name in data.FEATURES]
    assert data.validate_rows(np.array(row, dtype=object)) == [EXAMPLE]
    assert len(data.validate_records(np.array([row, row], dtype=object))) == 2


def test_numpy_integers_are_integers():
    assert data.validate_rows(record(age=np.int64(40)))


def test_float_features_accept_ints_and_floats_in_range():
    feature = data.NumericFeature("ratio", 0, 1, integer=False)
    assert data.value_problem(feature, 0.5) is None
    assert data.value_problem(feature, 1) is None
    assert "finite" in str(data.value_problem(feature, math.inf))
    assert "expected a number" in str(data.value_problem(feature, "0.5"))
    assert "boolean" in str(data.value_problem(feature, True))


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (record(country="france"), "row 0, field 'country': unknown category 'france'"),
        (record(subscriber_type=3), "field 'subscriber_type': expected a string, got int"),
        (record(age="12"), "row 0, field 'age': expected an integer, got str '12'"),
        (record(age=True), "field 'age': expected a number, got a boolean"),
        (record(age=12.0), "field 'age': expected an integer, got float"),
        (record(age=float("nan")), "row 0, field 'age': value is missing (NaN/null)"),
        (record(num_streams=None), "field 'num_streams': value is missing"),
        (record(age=101), "field 'age': value 101 is outside the range [18, 100]"),
        (record(num_streams=-1), "field 'num_streams': value -1 is outside the range"),
        ({k: v for k, v in EXAMPLE.items() if k != "age"}, "row 0: missing field 'age'"),
        (record(customer_id=7), "row 0: unexpected field 'customer_id'"),
        ([EXAMPLE, record(country="mars")], "row 1, field 'country'"),
        ([EXAMPLE, "not a record"], "row 1: expected a record (dict), got str"),
        ([], "no records given"),
        ("a string", "expected a record (dict), a list of records, an array or a DataFrame"),
        (np.array([["singapore", 30]], dtype=object), "must have 4 columns"),
        (np.array([["singapore", "30", "aavail_basic", "5"]]), "expected an integer, got str"),
    ],
    ids=[
        "unknown-category", "number-for-category", "string-for-integer", "boolean",
        "float-for-integer", "nan", "null", "above-range", "below-range", "missing-field",
        "extra-field", "second-row", "row-not-a-dict", "empty-list", "not-records",
        "array-too-narrow", "array-of-strings",
    ],
)
def test_invalid_records_are_refused_with_row_field_and_problem(records, expected):
    with pytest.raises(DataValidationError) as raised:
        data.validate_records(records)
    assert expected in str(raised.value)


def test_validation_error_carries_row_and_field():
    with pytest.raises(DataValidationError) as raised:
        data.validate_records([EXAMPLE, record(age=5)])
    assert (raised.value.row, raised.value.field) == (1, "age")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda f: f.assign(age=[30.0, np.nan]), "row 1, field 'age': value is missing"),
        (lambda f: f.assign(age=[True, False]), "row 0, field 'age': expected a number"),
        (lambda f: f.assign(age=[30, 120]), "row 1, field 'age': value 120 is outside"),
        (lambda f: f.assign(country=["singapore", "atlantis"]), "row 1, field 'country'"),
        (lambda f: f.assign(extra=1), "unexpected field 'extra'"),
        (lambda f: f.drop(columns="num_streams"), "missing field 'num_streams'"),
        (lambda f: f.iloc[0:0], "no rows"),
    ],
    ids=["nan", "bool-column", "out-of-range", "unknown-category", "extra-column",
         "missing-column", "empty"],
)
def test_invalid_frames_are_refused(change, expected):
    frame = change(pd.DataFrame([EXAMPLE, EXAMPLE]))
    with pytest.raises(DataValidationError, match=expected.replace("(", r"\(")):
        data.validate_records(frame)


def test_a_float_column_of_whole_numbers_is_accepted_for_an_integer_feature():
    frame = pd.DataFrame([EXAMPLE, EXAMPLE]).assign(age=[30.0, 41.0])
    assert data.validate_records(frame)["age"].tolist() == [30, 41]


@pytest.mark.parametrize(
    ("ages", "expected"),
    [([30.0, 30.5], "row 1, field 'age': expected an integer, got float 30.5"),
     ([np.inf, 30.0], "row 0, field 'age': expected an integer, got float inf"),
     ([30.0, 101.0], "row 1, field 'age': value 101 is outside the range")],
    ids=["fraction", "infinity", "out-of-range"],
)
def test_a_float_column_for_an_integer_feature_is_checked(ages, expected):
    frame = pd.DataFrame([EXAMPLE, EXAMPLE]).assign(age=ages)
    with pytest.raises(DataValidationError) as raised:
        data.validate_records(frame)
    assert expected in str(raised.value)


def test_dataset_validation_requires_the_target():
    with pytest.raises(DataValidationError, match="missing column 'is_subscriber'"):
        data.validate_dataset(pd.DataFrame([EXAMPLE]))


@pytest.mark.parametrize("target", [2, True, "1", None])
def test_dataset_validation_requires_a_binary_target(target):
    frame = pd.DataFrame([{**EXAMPLE, data.TARGET: 1}, {**EXAMPLE, data.TARGET: target}])
    with pytest.raises(DataValidationError, match="row 1, column 'is_subscriber'"):
        data.validate_dataset(frame)


def test_dataset_validation_accepts_a_float_target_of_zeros_and_ones():
    frame = pd.DataFrame([{**EXAMPLE, data.TARGET: 1.0}, {**EXAMPLE, data.TARGET: 0.0}])
    assert data.validate_dataset(frame)[data.TARGET].tolist() == [1, 0]


def test_dataset_validation_refuses_a_non_frame():
    with pytest.raises(DataValidationError, match="expected a DataFrame"):
        data.validate_dataset([EXAMPLE])


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


HEADER = "country,age,subscriber_type,num_streams,is_subscriber\n"


def test_csv_loads_typed_columns(tmp_path):
    path = write(tmp_path, HEADER + "singapore,30,aavail_basic,5,1\nunited_states,41,"
                                    "aavail_unlimited,20,0\n")
    frame = data.load_csv(path)
    assert frame.to_dict("records")[0] == {"country": "singapore", "age": 30,
                                           "subscriber_type": "aavail_basic", "num_streams": 5,
                                           "is_subscriber": 1}
    assert frame["age"].dtype == "int64"


def test_csv_round_trips_the_default_dataset(tmp_path):
    frame = data.make_default_dataset(100)
    path = tmp_path / "train.csv"
    path.write_bytes(data.canonical_csv(frame))
    pd.testing.assert_frame_equal(data.load_csv(path), frame)


def test_csv_from_a_spreadsheet_export_loads(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes(b"\xef\xbb\xbfcountry, age, subscriber_type, num_streams, is_subscriber\r\n"
                     b"singapore,30,aavail_basic,5,1\r\n")
    assert data.load_csv(path)["age"].tolist() == [30]


def test_csv_ignores_extra_columns(tmp_path):
    path = write(tmp_path, "customer_id," + HEADER + "7,singapore,30,aavail_basic,5,1\n")
    assert list(data.load_csv(path).columns) == data.FEATURES + [data.TARGET]


def test_csv_without_target_holds_records_to_predict():
    stream = io.StringIO("country,age,subscriber_type,num_streams\nsingapore,30,aavail_basic,5\n")
    assert list(data.load_csv(stream, with_target=False).columns) == data.FEATURES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        (HEADER, "has a header but no data rows"),
        ("country,age,subscriber_type\nsingapore,30,aavail_basic\n",
         "missing column 'num_streams'"),
        (HEADER + "singapore,30,aavail_basic,5,1\nsingapore,old,aavail_basic,5,1\n",
         "line 3, column 'age': expected an integer, got 'old'"),
        (HEADER + "singapore,,aavail_basic,5,1\n", "line 2, column 'age': value is missing"),
        (HEADER + "singapore,30.5,aavail_basic,5,1\n", "column 'age': expected an integer"),
        (HEADER + "mars,30,aavail_basic,5,1\n", "line 2, column 'country': unknown category"),
        (HEADER + "singapore,300,aavail_basic,5,1\n", "line 2, column 'age': value 300 is outside"),
        (HEADER + "singapore,30,aavail_basic,5,yes\n", "line 2, column 'is_subscriber'"),
        (HEADER + "singapore,30,aavail_basic,5,3\n", "line 2, column 'is_subscriber'"),
    ],
    ids=["empty", "header-only", "missing-column", "wrong-type", "empty-value", "float-for-int",
         "unknown-category", "out-of-range", "bad-target", "target-not-binary"],
)
def test_invalid_csv_is_refused_naming_file_line_and_column(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(DataValidationError) as raised:
        data.load_csv(path)
    assert str(path) in str(raised.value)
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ("mars,30,aavail_basic,5,1\nsingapore,old,aavail_basic,5,1\n",
         "line 2, column 'country': unknown category"),
        ("singapore,300,aavail_basic,5,1\nsingapore,old,aavail_basic,5,1\n",
         "line 2, column 'age': value 300 is outside"),
        ("singapore,30,aavail_basic,5,1\nsingapore,30,aavail_basic,x,1\n"
         "singapore,30,aavail_gold,5,1\n",
         "line 3, column 'num_streams': expected an integer, got 'x'"),
        ("mars,300,aavail_basic,5,1\n", "line 2, column 'country'"),
    ],
    ids=["bad-category-above-unparsable", "out-of-range-above-unparsable",
         "unparsable-above-bad-category", "leftmost-on-one-line"],
)
def test_csv_with_several_bad_values_reports_the_first_bad_line(tmp_path, rows, expected):
    with pytest.raises(DataValidationError, match=re.escape(expected)):
        data.load_csv(write(tmp_path, HEADER + rows))


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_shipped_examples_are_inputs_of_the_schema():
    """examples/ is what the README and `make predict` use: it must follow SCHEMA."""
    record = json.loads((EXAMPLES / "record.json").read_text(encoding="utf-8"))
    assert record == data.SCHEMA.example
    data.validate_records(record)
    records = data.load_csv(EXAMPLES / "records.csv", with_target=False)
    assert list(records.columns) == data.FEATURES and len(records) > 1


def test_csv_that_is_not_text_is_refused(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(DataValidationError, match="not a readable CSV file"):
        data.load_csv(path)


def test_float_feature_columns_parse_from_csv():
    feature = data.NumericFeature("ratio", 0, 1, integer=False)
    text = pd.Series(["0.25", "1"])
    assert data._parse_csv_column(feature, text, str).tolist() == [0.25, 1.0]
    with pytest.raises(DataValidationError, match="expected a finite number, got 'x'"):
        data._parse_csv_column(feature, pd.Series(["0.5", "x"]), lambda i: f"line {i + 2}")


def test_fingerprint_is_stable_and_sensitive_to_the_data():
    frame = data.make_default_dataset(100)
    changed = frame.copy()
    changed.loc[0, "age"] += 1
    assert data.fingerprint(frame) == data.fingerprint(frame.copy())
    assert data.fingerprint(frame) == data.fingerprint(frame[list(reversed(frame.columns))])
    assert data.fingerprint(frame) != data.fingerprint(changed)
    assert len(data.fingerprint(frame)) == 64


def test_summary_describes_shape_features_and_target():
    summary = data.summarize(data.make_default_dataset(100))
    assert (summary["n_rows"], summary["n_features"]) == (100, 4)
    assert sum(summary["target"].values()) == 100
    assert set(summary["features"]["country"]) <= {"singapore", "united_states"}
    assert summary["features"]["age"]["min"] >= 18


def valid_values(feature):
    if isinstance(feature, data.CategoricalFeature):
        return st.sampled_from(feature.categories)
    return st.integers(int(feature.minimum), int(feature.maximum))


valid_records = st.fixed_dictionaries({f.name: valid_values(f) for f in data.SCHEMA.features})
any_value = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5),
                      st.lists(st.integers(), max_size=2))


@hypothesis_settings(max_examples=200, deadline=None)
@given(valid_records)
def test_every_record_within_the_schema_is_accepted(generated):
    assert data.validate_rows(generated) == [generated]


@hypothesis_settings(max_examples=300, deadline=None)
@given(valid_records, st.sampled_from(data.FEATURES), any_value)
def test_any_value_is_either_accepted_or_refused_with_a_validation_error(generated, name, value):
    generated[name] = value
    try:
        data.validate_records(generated)
    except DataValidationError as error:
        assert name in str(error)
