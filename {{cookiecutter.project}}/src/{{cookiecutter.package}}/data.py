"""Data ingestion: the schema, the embedded default data set, the CSV loader, record validation.

``SCHEMA`` is the single source of truth for the model's inputs. Training, prediction, the
HTTP request model and drift monitoring all read feature names, types, categories and ranges
from it, so swapping in a team's real data starts (and mostly ends) here.

pandas is imported inside the functions that build or read DataFrames: the service validates
and scores rows without it, and importing it costs a fifth of a second at start-up.
"""

from __future__ import annotations

import hashlib
import math
import os
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

Records = Union[Mapping, Sequence[Mapping], np.ndarray, "pd.DataFrame"]


def is_frame(value) -> bool:
    """Whether ``value`` is a pandas DataFrame, without importing pandas to find out.

    A DataFrame exists only once pandas was imported, so a process that never imported it
    (the service) answers no at no cost.
    """
    # getattr: while another thread imports pandas, the module exists without DataFrame yet.
    frame_type = getattr(sys.modules.get("pandas"), "DataFrame", None)
    return frame_type is not None and isinstance(value, frame_type)


def make_default_dataset(n_rows: int = 1000, seed: int = 20240) -> pd.DataFrame:
    """Generate the embedded churn data set: the same rows for the same arguments.

    Subscription follows a logistic relation to the features (more streams and a bigger plan
    help, age and Singapore hurt slightly), so a model has a real signal to learn.
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


def _describe(value) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    kind = "a boolean" if isinstance(value, (bool, np.bool_)) else type(value).__name__
    return f"{kind} {text}" if kind != "a boolean" else kind


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    # Its missing values exist only once pandas was imported (getattr: or is being imported).
    pandas = sys.modules.get("pandas")
    markers = (getattr(pandas, "NA", None), getattr(pandas, "NaT", None))
    return any(value is marker for marker in markers if marker is not None)


def value_problem(feature: Feature, value) -> str | None:
    """Describe what is wrong with ``value`` for ``feature``, or return None when it is valid.

    Strict on purpose: booleans are not numbers, the string "12" is not an integer, and 12.0
    is not an integer either, so that a client's type mistake is reported, not guessed at.
    """
    if _is_missing(value):
        return "value is missing (NaN/null)"
    if isinstance(feature, CategoricalFeature):
        if not isinstance(value, str):
            return f"expected a string, got {_describe(value)}"
        if not feature.allows(value):
            return f"unknown category {value!r} (allowed: {', '.join(feature.categories)})"
        return None
    if isinstance(value, (bool, np.bool_)):
        return "expected a number, got a boolean"
    if feature.integer:
        if not isinstance(value, (int, np.integer)):
            return f"expected an integer, got {_describe(value)}"
    elif not isinstance(value, (int, float, np.integer, np.floating)):
        return f"expected a number, got {_describe(value)}"
    elif not math.isfinite(value):
        return f"expected a finite number, got {value!r}"
    if not feature.minimum <= value <= feature.maximum:
        return f"value {value} is outside the range [{feature.minimum}, {feature.maximum}]"
    return None


def _field_mismatch(row: Mapping, index: int) -> DataValidationError:
    missing = [name for name in FEATURES if name not in row]
    if missing:
        return DataValidationError(
            f"row {index}: missing field {missing[0]!r} (expected fields: {', '.join(FEATURES)})",
            row=index, field=missing[0],
        )
    extra = sorted(str(key) for key in row if key not in _FEATURE_SET)
    return DataValidationError(
        f"row {index}: unexpected field {extra[0]!r} (expected fields: {', '.join(FEATURES)})",
        row=index, field=extra[0],
    )


def _array_rows(array: np.ndarray) -> list[dict]:
    """Rows of a 1-D (one record) or 2-D array whose columns are the features in schema order."""
    table = array.reshape(1, -1) if array.ndim == 1 else array
    if table.ndim != 2 or table.shape[1] != len(FEATURES):
        raise DataValidationError(
            f"an array of records must have {len(FEATURES)} columns ({', '.join(FEATURES)}), "
            f"got shape {array.shape}"
        )
    return [dict(zip(FEATURES, row)) for row in table.tolist()]


def validate_rows(records: Mapping | Sequence[Mapping] | np.ndarray) -> list[Mapping]:
    """Validate one record, a list of records or an array of rows; return a list of records.

    The fast path of prediction: no DataFrame is built, so a single row costs microseconds.
    An array holds the features in schema order (use ``dtype=object`` to keep mixed types).
    """
    rows: Sequence
    if isinstance(records, Mapping):
        rows = [records]
    elif isinstance(records, (list, tuple)):
        rows = records
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
            raise _field_mismatch(row, index)
        for feature in features:
            problem = value_problem(feature, row[feature.name])
            if problem is not None:
                raise DataValidationError(
                    f"row {index}, field {feature.name!r}: {problem}",
                    row=index, field=feature.name,
                )
    return list(rows)


def rows_to_frame(rows: Sequence[Mapping]) -> pd.DataFrame:
    """Turn validated rows into a DataFrame with the schema's column order and dtypes."""
    import pandas as pd  # start-up cost: see the module docstring

    frame = pd.DataFrame.from_records(list(rows), columns=FEATURES)
    return frame.astype(SCHEMA.dtypes)


def _first_problem(feature: Feature, column: pd.Series) -> tuple[int, str] | None:
    """Find the first invalid value of a column: vectorised when the dtype allows it."""
    import pandas as pd  # start-up cost: see the module docstring

    values = column.to_numpy()
    if isinstance(feature, CategoricalFeature):
        bad = ~column.isin(feature.categories).to_numpy()
    elif pd.api.types.is_bool_dtype(column.dtype):
        bad = np.ones(len(values), dtype=bool)
    elif pd.api.types.is_integer_dtype(column.dtype) and not column.hasnans:
        bad = (values < feature.minimum) | (values > feature.maximum)
    elif pd.api.types.is_float_dtype(column.dtype):
        # pandas stores an integer column that has a NaN as floats: report the NaN, and accept
        # whole numbers in a float column for an integer feature.
        values = column.to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) | (values < feature.minimum) | (values > feature.maximum)
            if feature.integer:
                bad |= values != np.round(values)
        for position in np.flatnonzero(bad):
            value = float(values[position])
            if feature.integer and value.is_integer():
                value = int(value)
            return int(position), value_problem(feature, value) or "invalid value"
        return None
    else:
        bad = np.ones(len(values), dtype=bool)  # object or mixed dtype: check value by value
    for position in np.flatnonzero(bad):
        problem = value_problem(feature, column.iloc[position])
        if problem is not None:
            return int(position), problem
    return None


def _check_target(column: pd.Series, where) -> pd.Series:
    allowed = set(SCHEMA.classes)
    for position, value in enumerate(column.tolist()):
        if _is_missing(value):
            raise DataValidationError(
                f"{where(position)}, column {TARGET!r}: value is missing (NaN/null)",
                row=position, field=TARGET,
            )
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or value not in allowed):
            raise DataValidationError(
                f"{where(position)}, column {TARGET!r}: expected one of "
                f"{', '.join(map(str, SCHEMA.classes))}, got {_describe(value)}",
                row=position, field=TARGET,
            )
    return column.astype("int64")


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
    for feature in SCHEMA.features:
        found = _first_problem(feature, frame[feature.name])
        if found is not None:
            position, problem = found
            raise DataValidationError(
                f"{where(position)}, {noun} {feature.name!r}: {problem}",
                row=position, field=feature.name,
            )
    result = frame[FEATURES].astype(SCHEMA.dtypes).reset_index(drop=True)
    if with_target:
        result[TARGET] = _check_target(frame[TARGET].reset_index(drop=True), where)
    return result


def validate_records(records: Records) -> pd.DataFrame:
    """Validate records (a dict, a list of dicts, an array or a DataFrame) against the schema.

    Returns a DataFrame of the features in model order. Raises ``DataValidationError`` naming
    the row, the field and the problem: a missing or unexpected field, a missing value or NaN,
    a wrong type, an unknown category, a value out of range. In a DataFrame, a float column of
    whole numbers counts as integers (pandas turns an integer column with a NaN into floats).
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


_INTEGER = r"\s*[+-]?\d{1,18}\s*"


def _first_unparsable(feature: Feature, text: pd.Series) -> tuple[int, str] | None:
    """The position of the first value of a column read as strings that is not of the
    feature's type, and the problem; None when every value parses."""
    import pandas as pd  # start-up cost: see the module docstring

    if isinstance(feature, CategoricalFeature):
        return None
    if feature.integer:
        bad = ~text.str.fullmatch(_INTEGER)
    else:
        parsed = pd.to_numeric(text, errors="coerce")
        bad = parsed.isna().to_numpy() | ~np.isfinite(parsed.to_numpy(dtype=float))
    positions = np.flatnonzero(np.asarray(bad))
    if not len(positions):
        return None
    position = int(positions[0])
    value = text.iloc[position]
    kind = "an integer" if feature.integer else "a finite number"
    problem = ("value is missing (empty)" if not value.strip()
               else f"expected {kind}, got {value!r}")
    return position, problem


def _parse_csv_column(feature: Feature, text: pd.Series, where) -> pd.Series:
    """Parse one column read as strings into the feature's type, naming the first bad line."""
    import pandas as pd  # start-up cost: see the module docstring

    unparsable = _first_unparsable(feature, text)
    if unparsable is not None:
        position, problem = unparsable
        raise DataValidationError(
            f"{where(position)}, column {feature.name!r}: {problem}",
            row=position, field=feature.name,
        )
    if isinstance(feature, CategoricalFeature):
        return text.astype(object)
    if feature.integer:
        return text.astype("int64")
    return pd.to_numeric(text).astype("float64")


def _first_csv_problem(feature: Feature, text: pd.Series) -> tuple[int, str] | None:
    """The first bad line of a column read as strings: a value that is not of the feature's
    type, or an earlier one that is but breaks the feature's rule (range, category)."""
    unparsable = _first_unparsable(feature, text)
    end = len(text) if unparsable is None else unparsable[0]
    head = _parse_csv_column(feature, text.iloc[:end], str)
    return _first_problem(feature, head) or unparsable


def load_csv(source: str | os.PathLike | IO, *, with_target: bool = True,
             name: str | None = None) -> pd.DataFrame:
    """Read and validate a CSV file (a path or an open text stream) against the schema.

    With ``with_target`` the target column is required (training data); without it the file
    holds records to predict. Columns not in the schema are ignored. Raises
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

    columns = list(SCHEMA.features)
    if with_target:
        columns.append(NumericFeature(TARGET, min(SCHEMA.classes), max(SCHEMA.classes)))
    # Each column's first bad line, then the earliest of them: a file with several bad
    # values is reported from the top, whichever column the first one is in.
    problems = [
        (found[0], order, feature.name, found[1])
        for order, feature in enumerate(columns)
        if (found := _first_csv_problem(feature, text[feature.name])) is not None
    ]
    if problems:
        position, _, column, problem = min(problems)
        raise DataValidationError(f"{where(position)}, column {column!r}: {problem}",
                                  row=position, field=column)
    parsed = pd.DataFrame(
        {feature.name: _parse_csv_column(feature, text[feature.name], where)
         for feature in columns}
    )
    return _validate_frame(
        parsed, with_target=with_target, allow_extra=False, where=where, noun="column"
    )


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
