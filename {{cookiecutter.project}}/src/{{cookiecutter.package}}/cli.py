"""The command line: ``train``, ``predict``, ``serve`` and ``monitor``.

Settings come from ``MODEL_*`` environment variables; options override them for one run.
A user error (bad input, bad setting) prints one line on stderr and exits with status 2;
a missing or refused model exits with status 1. ``monitor`` exits 0 when the drift check
passed, 1 when it found drift, 3 when there is nothing to monitor and 4 when the window
holds too few rows for a verdict (see ``monitoring``).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from . import data, device
from .config import Settings
from .registry import Registry, RegistryError


class UsageError(Exception):
    """The user's input cannot be used; the message says why."""


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the options given on the command line."""
    overrides = {
        name: getattr(args, name) for name in Settings.model_fields
        if getattr(args, name, None) is not None
    }
    return Settings(**overrides)


def _setting_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else "?"
        problems.append(f"MODEL_{name.upper()}={item.get('input')!r}: {item['msg']}")
    return "invalid setting " + "; ".join(problems)


def _read_records(source: str, fmt: str):
    """Records to predict from a JSON or CSV file, or from standard input (``-``)."""
    name = "<stdin>" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {name}: {getattr(error, 'strerror', None) or error}")
    if fmt == "auto":
        suffix = Path(source).suffix.lower()
        if suffix in (".json", ".csv"):
            fmt = suffix[1:]
        else:
            fmt = "json" if text.lstrip()[:1] in ("{", "[") else "csv"
    if fmt == "csv":
        return data.load_csv(io.StringIO(text), with_target=False, name=name)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(
            f"{name}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None


def _train(settings: Settings, args: argparse.Namespace) -> int:
    if settings.data_path is not None and not settings.data_path.is_file():
        raise UsageError(f"training data {settings.data_path} is not a file")
    from . import training  # imported here: scikit-learn would slow down `serve`'s start-up

    # The registry's training lock, as the service's /train takes it: a second run, from the
    # command line or from a worker, is refused (exit 1) instead of training at the same time.
    with Registry(settings.registry_dir).training_lock():
        _warn_if_replacing(settings, args.test_mode)
        result = training.train(settings, test_mode=args.test_mode)  # logs its device first
    summary = {
        "model_version": result.version,
        "name": result.name,
        "artifact": str(result.path),
        "selected_model": result.metrics["selected_model"],
        "test": result.metrics["test"],
        "baseline_test": result.metrics["baseline_test"],
    }
    print(json.dumps(summary, indent=2))
    return 0


def _warn_if_replacing(settings: Settings, test_mode: bool) -> None:
    """Say so when training replaces the current artifact of an existing version."""
    from .registry import Registry, artifact_name

    name = artifact_name(test_mode)
    registry = Registry(settings.registry_dir)
    try:
        trained_at = registry.metadata(name, settings.version).get("trained_at", "earlier")
    except RegistryError:
        return  # a new version, or one that cannot be read: nothing is silently replaced
    logging.getLogger(__package__).warning(
        "replacing %s version %s (trained %s): %s will point to the new model; the previous "
        "one stays in %s. To keep both, train another version: --version.",
        name, settings.version, trained_at, registry.link(name, settings.version).name,
        registry.artifacts_dir,
    )


def _predict(settings: Settings, args: argparse.Namespace) -> int:
    # The verified scoring spec, as the service loads it: numpy only, no pipeline to unpickle
    # and re-verify (a model without a spec falls back to its pipeline).
    from . import loading, scoring

    records = _read_records(args.input, args.format)
    loaded = loading.load_model(settings, test_mode=args.test_mode)
    prediction = scoring.predict(loaded, records, settings=settings, test_mode=args.test_mode)
    print(json.dumps(prediction.to_dict()))
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from .serving import service  # imported here: training and predicting need no web stack

    return service.run(settings) or 0


def _monitor(settings: Settings, args: argparse.Namespace) -> int:
    from . import monitoring  # imported here: plotting libraries load only when monitoring

    return monitoring.run_monitor(settings, test_mode=args.test_mode, days=args.days,
                                  report_dir=args.report_dir) or 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        description="Train, serve and monitor the model. Settings come from MODEL_* "
                    "environment variables; options override them.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train", help="train a model version and store it in the registry",
        description="Compare candidate models, evaluate the best on a held-out split and "
                    "store it as a new artifact of the model version.",
    )
    train.add_argument("--data", dest="data_path", metavar="CSV",
                       help="training data (default: MODEL_DATA_PATH or the embedded data set)")
    train.add_argument("--version", metavar="V", help="model version (default: MODEL_VERSION)")
    train.add_argument("--note", dest="version_note", metavar="TEXT",
                       help="what changed in this version (default: MODEL_VERSION_NOTE)")
    train.add_argument("--test-mode", action="store_true",
                       help="store a throw-away test model and write the test logs")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    train.set_defaults(handler=_train)

    predict = commands.add_parser(
        "predict", help="predict records from a JSON or CSV file, or standard input",
        description="Predict one record or many. JSON input is an object or a list of "
                    "objects; CSV input has a header row. Prints JSON with the labels, the "
                    "probabilities of class 1 and the model version.",
    )
    predict.add_argument("input", nargs="?", default="-",
                         help="file to read, or - for standard input (default)")
    predict.add_argument("--format", choices=("auto", "json", "csv"), default="auto",
                         help="input format (default: from the file name or the content)")
    predict.add_argument("--version", metavar="V", help="model version (default: MODEL_VERSION)")
    predict.add_argument("--test-mode", action="store_true",
                         help="use the test model and write the test logs")
    predict.set_defaults(handler=_predict)

    serve = commands.add_parser("serve", help="serve the model over HTTP",
                                description="Serve the model version over HTTP.")
    serve.add_argument("--host", help="address to bind (default: MODEL_HOST)")
    serve.add_argument("--port", type=int, help="port (default: MODEL_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (default: MODEL_WORKERS)")
    serve.set_defaults(handler=_serve)

    monitor = commands.add_parser(
        "monitor", help="check logged predictions for drift against the training data",
        description="Test whether the logged production inputs still come from the model's "
                    "training distribution. Exit status: 0 no drift, 1 drift at the "
                    "false-alarm level, 3 nothing to monitor, 4 not enough data.",
    )
    monitor.add_argument("--test-mode", action="store_true",
                         help="check the test model against the test logs")
    monitor.add_argument("--days", type=float, default=30,
                         help="check the predictions of the last DAYS days (default 30; "
                              "0 means all)")
    monitor.add_argument("--alpha", dest="monitor_alpha", type=float, metavar="LEVEL",
                         help="false-alarm level of the verdict over all checks "
                              "(default: MODEL_MONITOR_ALPHA, 0.01)")
    monitor.add_argument("--min-rows", dest="monitor_min_rows", type=int, metavar="N",
                         help="fewer rows in the window give 'not enough data', exit status 4 "
                              "(default: MODEL_MONITOR_MIN_ROWS, 20)")
    monitor.add_argument("--report-dir", type=Path, metavar="DIR",
                         help="where the JSON report and the PNG plot (with matplotlib) go "
                              "(default: MODEL_LOG_DIR/monitoring)")
    monitor.set_defaults(handler=_monitor)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = getattr(args, "quiet", False) or args.handler is not _train
    # Progress and warnings of the package go to stderr; stdout carries the JSON result.
    package_logger = logging.getLogger(__package__)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    package_logger.addHandler(handler)
    previous_level = package_logger.level
    package_logger.setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        return args.handler(_settings(args), args)
    except ValidationError as error:
        return _fail(parser, _setting_error(error), 2)
    except (data.DataValidationError, UsageError) as error:
        return _fail(parser, str(error), 2)
    except (RegistryError, device.ParityError) as error:
        return _fail(parser, str(error), 1)
    except OSError as error:
        return _fail(parser, f"{error.filename or ''}: {error.strerror or error}", 1)
    except KeyboardInterrupt:
        return _fail(parser, "interrupted", 130)
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)


def _fail(parser: argparse.ArgumentParser, message: str, status: int) -> int:
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
