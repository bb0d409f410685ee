"""The benchmark's reference: a plain Flask app, as a course-style service would be written.

It serves the same model with the same validation and the same per-row predict log through
``scoring.predict``; gunicorn runs it with sync workers (one request at a time per worker, a
new connection per request). Start it the way ``serving.py`` does::

    MODEL_LOG_DIR=/tmp/bench-logs gunicorn -w 1 -k sync --chdir benchmarks \\
        'flask_reference:create_app()'
"""

from flask import Flask, jsonify, request

from {{ cookiecutter.package }} import data, loading, scoring
from {{ cookiecutter.package }}.config import Settings


def create_app() -> Flask:
    """The Flask app with the model of the configured version loaded."""
    settings = Settings()
    loaded = loading.load_pipeline(settings)
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        payload = request.get_json(silent=True)
        if payload is None:
            return jsonify(detail="expected a JSON body"), 400
        if isinstance(payload, dict) and "records" in payload:
            payload = payload["records"]
        try:
            prediction = scoring.predict(loaded, payload, settings=settings)
        except data.DataValidationError as error:
            return jsonify(detail=str(error)), 422
        return jsonify(prediction.to_dict())

    return app
