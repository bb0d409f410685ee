"""Data ingestion: the schema, the embedded default data set, the CSV loader, record validation.

``SCHEMA`` is the single source of truth for the model's inputs. Training, prediction, the
HTTP request model and drift monitoring all read feature names, types, categories and ranges
from it, so swapping in a team's real data starts (and mostly ends) here.

pandas is imported inside the functions that build or read DataFrames: the service validates
and scores rows without it, and importing it costs a fifth of a second at start-up.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Union

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class DataValidationError(ValueError):
    """Input data does not match the schema; the message names the row, field and problem."""

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None):
        super().__init__(message)
        self.row = row
        self.field = field


@dataclass(frozen=True)
class CategoricalFeature:
    """A string feature that takes one of a fixed set of categories."""

    name: str
    categories: tuple[str, ...]
    description: str = ""
    kind: str = field(default="categorical", init=False)
    _allowed: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        # The empty string is a missing value (an empty CSV cell), so it is no category.
        if not all(isinstance(c, str) and c for c in self.categories):
            raise ValueError(f"{self.name}: categories are non-empty strings, got "
                             f"{self.categories!r}")
        # A set makes the membership test of every validated value O(1).
        object.__setattr__(self, "_allowed", frozenset(self.categories))

    def allows(self, value: str) -> bool:
        """Whether ``value`` is one of the categories."""
        return value in self._allowed


@dataclass(frozen=True)
class NumericFeature:
    """A number within a closed range; ``integer`` features accept whole numbers only."""

    name: str
    minimum: float
    maximum: float
    integer: bool = True
    description: str = ""
    kind: str = field(default="numeric", init=False)


Feature = Union[CategoricalFeature, NumericFeature]


@dataclass(frozen=True)
class Schema:
    """Features, target and an example record of the model's data."""

    features: tuple[Feature, ...]
    target: str
    target_description: str
    classes: tuple[int, ...]
    example: dict

    def feature(self, name) -> Feature | None:
        """The feature called ``name``, or None."""
        return next((feature for feature in self.features if feature.name == name), None)

    @property
    def feature_names(self) -> list[str]:
        """Feature names in model order."""
        return [feature.name for feature in self.features]

    @property
    def categorical(self) -> list[CategoricalFeature]:
        """The categorical features, in model order."""
        return [f for f in self.features if isinstance(f, CategoricalFeature)]

    @property
    def numeric(self) -> list[NumericFeature]:
        """The numeric features, in model order."""
        return [f for f in self.features if isinstance(f, NumericFeature)]

    @property
    def dtypes(self) -> dict[str, str]:
        """The pandas dtype of each feature column."""
        return {
            f.name: "object" if isinstance(f, CategoricalFeature)
            else ("int64" if f.integer else "float64")
            for f in self.features
        }


# The course's AAVAIL churn example: does a customer subscribe to the streaming service?
SCHEMA = Schema(
    features=(
        CategoricalFeature(
            "country", ("singapore", "united_states"), "Country of the customer's account."
        ),
        NumericFeature("age", 18, 100, integer=True, description="Age in years."),
        CategoricalFeature(
            "subscriber_type",
            ("aavail_basic", "aavail_premium", "aavail_unlimited"),
            "Plan the customer is on.",
        ),
        NumericFeature(
            "num_streams", 0, 1000, integer=True, description="Streams watched in the last month."
        ),
    ),
    target="is_subscriber",
    target_description="1 when the customer is still subscribed, else 0.",
    classes=(0, 1),
    example={
        "country": "united_states",
        "age": 34,
        "subscriber_type": "aavail_premium",
        "num_streams": 17,
    },
)
FEATURES: list[str] = SCHEMA.feature_names
TARGET: str = SCHEMA.target
_FEATURE_SET = frozenset(FEATURES)
# The numeric features, and the Python type a valid value of each already has.
_NUMERIC = tuple((f.name, f, int if f.integer else float) for f in SCHEMA.numeric)

Records = Union[Mapping, Sequence[Mapping], np.ndarray, "pd.DataFrame"]


def is_frame(value) -> bool:
    """Whether ``value`` is a pandas DataFrame, without importing pandas to find out.

    A DataFrame exists only once pandas was imported, so a process that never imported it
    (the service) answers no at no cost.
    """
    # getattr: while another thread imports pandas, the module exists without DataFrame yet.
    frame_type = getattr(sys.modules.get("pandas"), "DataFrame", None)
    return frame_type is not None and isinstance(value, frame_type)


def make_default_dataset(n_rows: int = 10_000, seed: int = 20240) -> pd.DataFrame:
    """Generate the embedded churn data set: the same rows for the same arguments.

    Subscription follows a logistic relation to the features (more streams and a bigger plan
    help, age and Singapore hurt slightly), so a model has a real signal to learn. 10,000 rows
    by default: the drift monitor compares production with the training split, and the
    smaller its reference, the larger a shift must be to stand out of the reference's own
    sampling error (README, "Monitoring").
    """
    import pandas as pd  # start-up cost: see the module docstring

    if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 1:
        raise ValueError(f"n_rows must be a positive integer, got {n_rows!r}")
    rng = np.random.default_rng(seed)
    plans = ("aavail_basic", "aavail_premium", "aavail_unlimited")
    country = rng.choice(["united_states", "singapore"], size=n_rows, p=[0.6, 0.4])
    plan_index = rng.choice(len(plans), size=n_rows, p=[0.5, 0.3, 0.2])
    age = np.clip(np.rint(rng.normal(38, 12, size=n_rows)), 18, 80).astype("int64")
    streams = rng.poisson(np.array([8, 14, 22])[plan_index]).clip(0, 1000).astype("int64")
    logit = (
        0.8
        + 0.25 * (streams - 12)
        - 0.06 * (age - 38)
        - 0.8 * (country == "singapore")
        + np.array([-0.6, 0.4, 1.0])[plan_index]
    )
    subscribed = rng.random(n_rows) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame(
        {
            "country": country,
            "age": age,
            "subscriber_type": np.array(plans)[plan_index],
            "num_streams": streams,
            TARGET: subscribed.astype("int64"),
        }
    )
    return frame.astype(SCHEMA.dtypes)


# ----------------------------------------------------------------------------- the input rule
#
# One rule decides whether a value is valid for a feature: ``value_problem``. Every entry
# point applies it, directly or by construction: ``validate_rows`` (records: the CLI's JSON,
# Python callers), ``load_csv`` (a CSV cell, once ``read_cell`` has read it), the DataFrame
# validation (training data, monitoring), and the API's request types, which serving.api_types
# builds from SCHEMA to accept exactly what this rule accepts, so that pydantic-core enforces
# it without a Python call per value. tests/test_input_rules.py runs one table of cases
# through all of them. The rule, case by case, is in the README ("The input rules").

MISSING = "value is missing"


def _describe(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "a boolean"
    if isinstance(value, np.generic):  # named as the Python number it is: float, not float64
        value = value.item()
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def _is_missing(value) -> bool:
    if value is None or (isinstance(value, str) and value == ""):
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    # Its missing values exist only once pandas was imported (getattr: or is being imported).
    pandas = sys.modules.get("pandas")
    markers = (getattr(pandas, "NA", None), getattr(pandas, "NaT", None))
    return any(value is marker for marker in markers if marker is not None)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)))


def _whole(value) -> bool:
    """Whether a number is a whole number (12 and 12.0 are; 12.5 and infinity are not)."""
    return isinstance(value, (int, np.integer)) or float(value).is_integer()


def value_problem(feature: Feature, value) -> str | None:
    """Describe what is wrong with ``value`` for ``feature``, or return None when it is valid.

    The one rule of every input. Missing: None, NaN, pandas' NA and the empty string. A
    categorical value is a string that is exactly one of the categories (no trimming, no
    change of case). A numeric value is a number (a boolean or a numeric string is not), finite
    and within the range; an integer feature takes whole numbers, 12.0 included: JSON Schema
    counts 12.0 as the integer 12, and so does the API's documented "integer".
    """
    # The common valid values first: a known category, an int in range (exact types only).
    if isinstance(feature, CategoricalFeature):
        if type(value) is str and feature.allows(value):
            return None
    elif type(value) is int and feature.minimum <= value <= feature.maximum:
        return None
    if _is_missing(value):
        return MISSING
    if isinstance(feature, CategoricalFeature):
        if not isinstance(value, str):
            return f"expected a string, got {_describe(value)}"
        if not feature.allows(value):
            return f"unknown category {value!r} (allowed: {', '.join(feature.categories)})"
        return None
    if not _is_number(value):
        return f"expected {'an integer' if feature.integer else 'a number'}, got {_describe(value)}"
    if feature.integer:
        if not _whole(value):
            return f"expected an integer, got {_describe(value)}"
        value = int(value)
    elif isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return f"expected a finite number, got {_describe(value)}"
    if not feature.minimum <= value <= feature.maximum:
        return f"value {value} is outside the range [{feature.minimum}, {feature.maximum}]"
    return None


def schema_value(feature: Feature, value):
    """``value`` as the feature's type holds it: an integer feature's 12.0 becomes the int 12,
    a float feature's 12 the float 12.0 (as the API's request type passes them on).

    Any other value is returned as it is; use it on values the rule accepts.
    """
    if isinstance(feature, NumericFeature):
        if feature.integer:
            if isinstance(value, (float, np.floating)) and value.is_integer():
                return int(value)
        elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            return float(value)
    return value


# A CSV cell of a numeric column is the number it spells in JSON's notation (12, -3, 12.0,
# 1e3), so that a file and a JSON record holding the same values are read alike.
_JSON_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def read_cell(feature: Feature, text: str):
    """The value a CSV cell holds for ``feature``.

    A CSV has no types: in a numeric column, a cell that spells a number as JSON writes one is
    that number; any other cell (``" 12"``, ``"+12"``, ``"nan"``, ``""``) is its text, exactly
    as written, and ``value_problem`` says what is wrong with it.
    """
    if isinstance(feature, NumericFeature):
        if _JSON_INTEGER.fullmatch(text):
            return int(text)
        if _JSON_NUMBER.fullmatch(text):
            return float(text)
    return text


def target_problem(value) -> str | None:
    """Describe what is wrong with a target value, or return None when it is one of the classes.

    Numbers as in ``value_problem``: 1.0 is the class 1, True and "1" are not classes.
    """
    if _is_missing(value):
        return MISSING
    if _is_number(value) and _whole(value) and int(value) in SCHEMA.classes:
        return None
    return f"expected one of {', '.join(map(str, SCHEMA.classes))}, got {_describe(value)}"


def missing_field(name: str, fields: Sequence[str] = FEATURES) -> str:
    """The problem of a record without the field ``name``; ``fields`` are the expected ones."""
    return f"missing field {name!r} (expected fields: {', '.join(fields)})"


def unexpected_field(name, fields: Sequence[str] = FEATURES) -> str:
    """The problem of a record with the field ``name``, which is not one of ``fields``."""
    return f"unexpected field {str(name)!r} (expected fields: {', '.join(fields)})"


# ----------------------------------------------------------------------------- records

def _array_rows(array: np.ndarray) -> list[Mapping]:
    """Rows of a 1-D (one record) or 2-D array whose columns are the features in schema order."""
    table = array.reshape(1, -1) if array.ndim == 1 else array
    if table.ndim != 2 or table.shape[1] != len(FEATURES):
        raise DataValidationError(
            f"an array of records must have {len(FEATURES)} columns ({', '.join(FEATURES)}), "
            f"got shape {array.shape}"
        )
    return [dict(zip(FEATURES, row)) for row in table.tolist()]


def _row_problem(row: Mapping, index: int) -> DataValidationError:
    """The first problem of a record whose fields are not the schema's, in the order the API
    reports them: the fields in schema order (each missing or invalid), then the first field
    that is not in the schema."""
    for feature in SCHEMA.features:
        if feature.name not in row:
            return DataValidationError(f"row {index}: {missing_field(feature.name)}",
                                       row=index, field=feature.name)
        problem = value_problem(feature, row[feature.name])
        if problem is not None:
            return DataValidationError(f"row {index}, field {feature.name!r}: {problem}",
                                       row=index, field=feature.name)
    extra = next(key for key in row if key not in _FEATURE_SET)
    return DataValidationError(f"row {index}: {unexpected_field(extra)}",
                               row=index, field=str(extra))


def validate_rows(records: Mapping | Sequence[Mapping] | np.ndarray) -> list[Mapping]:
    """Validate one record, a list of records or an array of rows; return a list of records.

    The fast path of prediction: no DataFrame is built, so a single row costs microseconds.
    An array holds the features in schema order (use ``dtype=object`` to keep mixed types).
    A record whose numeric value is not of its feature's type (12.0 for an integer, 12 for a
    float) is returned as a copy holding ``schema_value`` of it; the others as they are.
    """
    rows: list[Mapping]
    if isinstance(records, Mapping):
        rows = [records]
    elif isinstance(records, (list, tuple)):
        rows = list(records)
    elif isinstance(records, np.ndarray):
        rows = _array_rows(records)
    else:
        raise DataValidationError(
            "expected a record (dict), a list of records, an array or a DataFrame, "
            f"got {_describe(records)}"
        )
    if len(rows) == 0:
        raise DataValidationError("no records given: expected at least one row")
    features = SCHEMA.features
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataValidationError(
                f"row {index}: expected a record (dict), got {_describe(row)}", row=index
            )
        if row.keys() != _FEATURE_SET:
            raise _row_problem(row, index)
        for feature in features:
            problem = value_problem(feature, row[feature.name])
            if problem is not None:
                raise DataValidationError(f"row {index}, field {feature.name!r}: {problem}",
                                          row=index, field=feature.name)
        changed = None
        for name, feature, kind in _NUMERIC:
            value = row[name]
            if type(value) is not kind and (typed := schema_value(feature, value)) is not value:
                changed = {**(changed or row), name: typed}
        if changed is not None:
            rows[index] = changed
    return rows


def rows_to_frame(rows: Sequence[Mapping]) -> pd.DataFrame:
    """Turn validated rows into a DataFrame with the schema's column order and dtypes."""
    import pandas as pd  # start-up cost: see the module docstring

    frame = pd.DataFrame.from_records(list(rows), columns=FEATURES)
    return frame.astype(SCHEMA.dtypes)


# ----------------------------------------------------------------------------- tables

def _distinct(values: np.ndarray, *, strings: bool = False) -> tuple[np.ndarray, list]:
    """The distinct values of a column and, for each row, the index of its value among them.

    Python holds 1, 1.0 and True equal, so hashing would give a boolean in a column of
    numbers a number's verdict: a column of Python objects is keyed by type and value. A typed
    column (or one of strings only, ``strings``) goes to pandas' factorize.
    """
    import pandas as pd  # start-up cost: see the module docstring

    if strings or values.dtype != object:
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        return np.asarray(codes), list(uniques)
    index: dict = {}
    distinct: list = []
    codes = np.empty(len(values), dtype=np.intp)
    for position, value in enumerate(values):
        try:
            code = index.setdefault((type(value), value), len(distinct))
        except TypeError:  # an unhashable value (a list): its own entry
            code = len(distinct)
        if code == len(distinct):
            distinct.append(value)
        codes[position] = code
    return codes, distinct


def _first_problem(check, codes: np.ndarray, uniques: list) -> tuple[int, str] | None:
    """The first row whose value ``check`` refuses, and the problem; None when all pass.

    ``check`` (the rule) is asked once per distinct value, so a million rows of a few hundred
    distinct values cost a few hundred calls.
    """
    problems = [check(value) for value in uniques]
    bad = [code for code, problem in enumerate(problems) if problem is not None]
    if not bad:
        return None
    position = int(np.flatnonzero(np.isin(codes, bad))[0])
    return position, problems[codes[position]]


def _raise_first(problems: list[tuple[int, int, str, str]], where, noun: str) -> None:
    """Raise the problem nearest the top; on its row, the one of the leftmost column."""
    if problems:
        position, _, name, problem = min(problems)
        raise DataValidationError(f"{where(position)}, {noun} {name!r}: {problem}",
                                  row=position, field=name)


def _checks(with_target: bool) -> list[tuple[str, object]]:
    """(name, rule) of each column of a table, in schema order."""
    checks = [(feature.name, functools.partial(value_problem, feature))
              for feature in SCHEMA.features]
    return checks + ([(TARGET, target_problem)] if with_target else [])


def _validate_frame(frame: pd.DataFrame, *, with_target: bool, allow_extra: bool, where,
                    noun: str = "field"):
    expected = FEATURES + ([TARGET] if with_target else [])
    missing = [name for name in expected if name not in frame.columns]
    if missing:
        raise DataValidationError(
            f"missing {noun} {missing[0]!r} (expected: {', '.join(expected)})", field=missing[0]
        )
    extra = [str(name) for name in frame.columns if name not in expected]
    if extra and not allow_extra:
        raise DataValidationError(
            f"unexpected {noun} {extra[0]!r} (expected: {', '.join(expected)})", field=extra[0]
        )
    if len(frame) == 0:
        raise DataValidationError("no rows: expected at least one")
    problems = []
    for order, (name, check) in enumerate(_checks(with_target)):
        found = _first_problem(check, *_distinct(frame[name].to_numpy()))
        if found is not None:
            problems.append((found[0], order, name, found[1]))
    _raise_first(problems, where, noun)
    result = frame[FEATURES].astype(SCHEMA.dtypes).reset_index(drop=True)
    if with_target:
        result[TARGET] = frame[TARGET].astype("int64").reset_index(drop=True)
    return result


def validate_records(records: Records) -> pd.DataFrame:
    """Validate records (a dict, a list of dicts, an array or a DataFrame) against the schema.

    Returns a DataFrame of the features in model order. Raises ``DataValidationError`` naming
    the row, the field and the problem: a missing or unexpected field, a missing value or NaN,
    a wrong type, an unknown category, a value out of range (``value_problem`` is the rule).
    """
    if is_frame(records):
        return _validate_frame(
            records, with_target=False, allow_extra=False, where=lambda i: f"row {i}"
        )
    return rows_to_frame(validate_rows(records))


def validate_dataset(frame: pd.DataFrame) -> pd.DataFrame:
    """Validate a training data set: every feature plus the target; extra columns are dropped."""
    if not is_frame(frame):
        raise DataValidationError(f"expected a DataFrame, got {_describe(frame)}")
    return _validate_frame(
        frame, with_target=True, allow_extra=True, where=lambda i: f"row {i}", noun="column"
    )


def load_csv(source: str | os.PathLike | IO, *, with_target: bool = True,
             name: str | None = None) -> pd.DataFrame:
    """Read and validate a CSV file (a path or an open text stream) against the schema.

    With ``with_target`` the target column is required (training data); without it the file
    holds records to predict. Columns not in the schema are ignored. Each cell is read with
    ``read_cell`` and checked with the rule every record follows (``value_problem``). Raises
    ``DataValidationError`` naming the file (or ``name``), line and column of the first bad
    line, the one nearest the top (on that line, the leftmost bad column).
    """
    import pandas as pd  # start-up cost: see the module docstring

    if name is None:
        name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<stream>"
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark.
        text = pd.read_csv(source, dtype=str, keep_default_na=False, na_filter=False,
                           encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataValidationError(f"{name}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataValidationError(f"{name}: not a readable CSV file ({error})") from None
    text.columns = [str(column).strip() for column in text.columns]
    expected = FEATURES + ([TARGET] if with_target else [])
    missing = [column for column in expected if column not in text.columns]
    if missing:
        raise DataValidationError(
            f"{name}: missing column {missing[0]!r} (expected columns: {', '.join(expected)})",
            field=missing[0],
        )
    if len(text) == 0:
        raise DataValidationError(f"{name}: the file has a header but no data rows")

    def where(position: int) -> str:
        return f"{name}, line {position + 2}"  # line 1 is the header

    target = NumericFeature(TARGET, min(SCHEMA.classes), max(SCHEMA.classes))
    readers = [*SCHEMA.features, target]
    dtypes = {**SCHEMA.dtypes, TARGET: "int64"}
    problems, columns = [], {}
    for order, (column, check) in enumerate(_checks(with_target)):
        feature = readers[order]
        codes, cells = _distinct(text[column].to_numpy(), strings=True)
        values = [read_cell(feature, cell) for cell in cells]
        found = _first_problem(check, codes, values)
        if found is not None:
            problems.append((found[0], order, column, found[1]))
        elif not problems:
            values = [schema_value(feature, value) for value in values]
            columns[column] = np.asarray(values, dtype=dtypes[column])[codes]
    _raise_first(problems, where, "column")
    # astype: pandas would otherwise infer its string dtype for the categorical columns.
    return pd.DataFrame(columns).astype({column: dtypes[column] for column in columns})


def canonical_csv(frame: pd.DataFrame) -> bytes:
    """The data set as canonical CSV bytes: schema column order, no index, Unix newlines."""
    columns = FEATURES + ([TARGET] if TARGET in frame.columns else [])
    return frame[columns].to_csv(index=False, lineterminator="\n").encode("utf-8")


def fingerprint(frame: pd.DataFrame) -> str:
    """The sha256 of the canonical CSV of a data set: equal data, equal fingerprint."""
    return hashlib.sha256(canonical_csv(frame)).hexdigest()


def summarize(frame: pd.DataFrame) -> dict:
    """A small summary of a data set for the train log: shape, features and target."""
    features: dict[str, dict[str, float]] = {}
    for feature in SCHEMA.features:
        column = frame[feature.name]
        if isinstance(feature, CategoricalFeature):
            counts = column.value_counts()
            features[feature.name] = {str(k): int(v) for k, v in counts.items()}
        else:
            features[feature.name] = {
                "mean": round(float(column.mean()), 4),
                "std": round(float(column.std(ddof=0)), 4),
                "min": float(column.min()),
                "max": float(column.max()),
            }
    summary = {"n_rows": len(frame), "n_features": len(FEATURES), "features": features}
    if TARGET in frame.columns:
        counts = frame[TARGET].value_counts()
        summary["target"] = {str(k): int(v) for k, v in sorted(counts.items())}
    return summary
