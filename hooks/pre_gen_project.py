"""Validate the answers before cookiecutter writes a single project file.

Each check is a plain function that returns the problems it finds as
sentences, so it can be tested without cookiecutter. ``main()`` runs every
check, prints one line per problem (variable, value, rule) and exits 1;
cookiecutter then deletes the half-created project folder.
"""

import json
import keyword
import re
import sys

# Cookiecutter renders this file before running it. The answers arrive as
# JSON inside a raw string, so the unrendered file stays importable Python.
# Apostrophes are escaped because one would end the string literal early.
ANSWERS = r'''{{ cookiecutter | jsonify | replace("'", "\\u0027") }}'''

SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13", "3.14")
"""Oldest: scikit-learn's floor. Newest: what the project is tested on."""

CHOICES = {
    "python_version": SUPPORTED_PYTHONS,
    "gpu_image": ("yes", "no"),
    "deploy_target": ("kubernetes", "none"),
    "license": ("MIT", "Apache-2.0", "BSD-3-Clause", "Proprietary"),
}

REQUIRED_TEXT = ("project_name", "description", "author_name")

# Names the generated project depends on (as import names and as normalised
# distribution names), or exposes itself (the generic console script
# ``model``). A package with one of these names would hide the real module on
# sys.path or clash on install. A test keeps this list in step with the
# generated pyproject.toml.
DEPENDENCY_NAMES = frozenset({
    # runtime
    "fastapi", "httptools", "matplotlib", "numpy", "orjson", "pandas", "prometheus_client",
    "pydantic", "pydantic_settings", "scikit_learn", "scipy", "sklearn", "skops",
    "tqdm", "typing_extensions", "uvicorn", "uvloop",
    # development
    "flake8", "flask", "gunicorn", "httpx", "httpx2", "hypothesis", "pytest", "pytest_cov",
    "mypy", "schemathesis", "array_api_strict",
    # GPU training (the gpu extra): CuPy, and the CUDA wheels' namespaces
    "cupy", "cupy_cuda12x", "cuda", "cuda_toolkit", "nvidia",
    # installed with them, or tools the project runs
    "coverage", "docker", "joblib", "pip", "pydantic_core", "setuptools",
    "starlette", "threadpoolctl", "uv", "yaml",
    # the project's own generic console script
    "model",
})

# Names the standard library does not list, but which a package must not take
# either: CPython's own test suite, and the project's tests folder.
EXTRA_RESERVED_NAMES = frozenset({"test", "tests"})

SLUG_PATTERN = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
PACKAGE_PATTERN = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
EMAIL_PATTERN = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}"
)
GITHUB_OWNER_PATTERN = re.compile(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*")
GITHUB_OWNER_MAX_LENGTH = 39
VERSION_PATTERN = re.compile(r"(\d+)\.(\d+)")


def check_not_shadowing(import_name):
    """Return the problems of an import name that keyword or module would clash with."""
    if keyword.iskeyword(import_name):
        return ["is a Python keyword"]
    if import_name in sys.stdlib_module_names or import_name in EXTRA_RESERVED_NAMES:
        return ["would shadow the standard library module of that name"]
    if import_name in DEPENDENCY_NAMES:
        return ["would shadow a dependency of the generated project"]
    return []


def check_slug(slug):
    """Return the problems of the project slug (folder, distribution and image name)."""
    if not SLUG_PATTERN.fullmatch(slug):
        return [
            "must be lowercase letters, digits and single hyphens, "
            "start with a letter and not end with a hyphen"
        ]
    return check_not_shadowing(slug.replace("-", "_"))


def check_package(package):
    """Return the problems of the package's import name."""
    if not PACKAGE_PATTERN.fullmatch(package):
        return [
            "must be a lowercase Python identifier: letters, digits and single "
            "underscores, starting with a letter"
        ]
    return check_not_shadowing(package)


def check_email(email):
    """Return the problems of an e-mail address (name@domain.tld, no spaces)."""
    if EMAIL_PATTERN.fullmatch(email):
        return []
    return ["must be an e-mail address like name@example.com"]


def check_github_owner(owner):
    """Return the problems of a GitHub user or organisation name, by GitHub's rules."""
    if len(owner) <= GITHUB_OWNER_MAX_LENGTH and GITHUB_OWNER_PATTERN.fullmatch(owner):
        return []
    return [
        f"must be 1 to {GITHUB_OWNER_MAX_LENGTH} letters, digits or single "
        "hyphens, not starting or ending with a hyphen (GitHub's rule)"
    ]


def check_python_version(version):
    """Return the problems of a Python version; only the supported ones pass."""
    if version in SUPPORTED_PYTHONS:
        return []
    supported = ", ".join(SUPPORTED_PYTHONS)
    match = VERSION_PATTERN.fullmatch(version)
    if not match:
        return [f"must be a Python version written like {SUPPORTED_PYTHONS[-1]}"]
    if (int(match[1]), int(match[2])) < (3, 11):
        return [f"is too old: scikit-learn needs Python 3.11 or newer (supported: {supported})"]
    return [f"is newer than the template supports (supported: {supported})"]


def check_choice(variable, value):
    """Return the problems of a value outside its variable's allowed choices."""
    allowed = CHOICES[variable]
    if value in allowed:
        return []
    return ["must be one of " + ", ".join(allowed)]


def check_required_text(text):
    """Return the problems of a free-text answer that must not be blank."""
    if text.strip():
        return []
    return ["must not be empty"]


def answer_checks():
    """Return {variable: check} for every answer that has a rule, in reporting order."""
    checks = {name: check_required_text for name in REQUIRED_TEXT}
    checks.update({
        "project": check_slug,
        "package": check_package,
        "author_email": check_email,
        "github_owner": check_github_owner,
        "python_version": check_python_version,  # its own check explains the reason
    })
    for name in CHOICES:
        checks.setdefault(name, lambda value, name=name: check_choice(name, value))
    return checks


def check_answer(name, value):
    """Return one message per problem of one answer, naming the variable, value and rule."""
    value = str(value)
    return [f"{name}={value!r} {rule}." for rule in answer_checks()[name](value)]


def validate(answers):
    """Return one message per problem in ``answers``; an empty list means valid.

    Each message names the variable, the value and the rule it breaks.
    """
    return [
        message
        for name in answer_checks()
        for message in check_answer(name, answers.get(name, ""))
    ]


def main():
    """Validate the rendered answers; print the problems and exit 1 if any."""
    messages = validate(json.loads(ANSWERS))
    for message in messages:
        print(f"ERROR: {message}", file=sys.stderr)
    if messages:
        sys.exit(1)


if __name__ == "__main__":
    main()
