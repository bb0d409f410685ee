"""The model package: data, training, the artifact registry, prediction, logs and serving."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("{{ cookiecutter.project }}")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
