"""The course's way to serve the model: Flask, a pandas DataFrame and the pipeline's predict_proba.

The course's reference solutions load the fitted scikit-learn pipeline, turn the JSON query
into a DataFrame, call the pipeline on it and append a line to a predict log file opened for
each request. This app does that with the same model: no validation beyond what pandas and
the pipeline refuse (a 400 with the error's message, not a crash), one ``predict_proba`` call
(the labels are its threshold, so the pipeline runs once, not twice) and one CSV line per
request in ``MODEL_LOG_DIR``. gunicorn runs it with sync workers, as ``serving.py`` does::

    MODEL_LOG_DIR=/tmp/bench-logs gunicorn -w 1 -k sync --chdir benchmarks \\
        'flask_course:create_app()'
"""

import csv
import time
import uuid
from datetime import datetime, timezone

import pandas as pd
from flask import Flask, jsonify, request

from {{ cookiecutter.package }} import data, loading
from {{ cookiecutter.package }}.config import Settings


def create_app() -> Flask:
    """The Flask app with the configured version's pipeline loaded."""
    settings = Settings()
    pipeline = loading.load_pipeline(settings).pipeline
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        started = time.perf_counter()
        query = request.get_json(silent=True)
        if isinstance(query, dict):
            query = query.get("records", [query])
        if not isinstance(query, list) or not query:
            return jsonify(detail="expected a JSON record or a list of records"), 400
        try:
            frame = pd.DataFrame(query, columns=data.FEATURES)
            probabilities = pipeline.predict_proba(frame)[:, 1]
        except (ValueError, TypeError) as error:
            return jsonify(detail=str(error)), 400
        labels = (probabilities > 0.5).astype(int).tolist()
        request_id = uuid.uuid4().hex
        log_file = settings.log_dir / f"predict-course-{datetime.now(timezone.utc):%Y-%m}.csv"
        with open(log_file, "a", newline="") as log:
            csv.writer(log).writerow([request_id, time.time(), labels, frame.shape,
                                      settings.version, time.perf_counter() - started])
        return jsonify(request_id=request_id, model_version=settings.version,
                       predictions=labels, probabilities=probabilities.tolist())

    return app
