"""The HTTP service: the app and its routes, ``POST /predict``, the served model's state, the
API's types and JSON bodies, and its metrics. It loads models with ``loading`` and scores them
with ``scoring``: importing it loads none of scikit-learn, SciPy, pandas or skops, which a test
of the package's import graph (``tests/test_layout.py``) keeps true."""
