"""The template's Jinja extension: valid derived defaults, and each answer checked at once.

Cookiecutter renders the variables of ``cookiecutter.json`` in order while it prompts, each
with the answers given so far. Its prompts take any text: they have no validation of their
own. So a private variable (``__`` prefix: rendered, never prompted) follows each checked
answer and renders ``{{ cookiecutter | check_answer('name') }}``: a bad answer stops the
questions right after it was given, instead of after the last one in the pre-generation hook.

The rules are the hook's own (``hooks/pre_gen_project.py``), loaded from its file; the hook
still checks every answer, because a replay or a template update does not prompt.
Cookiecutter loads this module through ``_extensions``, with the template folder on
``sys.path`` (its "local extensions").
"""

import importlib.util
from pathlib import Path

import click
from jinja2.ext import Extension
from slugify import slugify

FALLBACK_SLUG = "unnamed"
"""The slug of a project name that has no letters or digits to make one from."""
SLUG_AFFIX = "project"
"""Added to a derived slug that would be refused: ``3d`` -> ``project-3d``,
``json`` -> ``json-project``."""


def load_rules():
    """Import the pre-generation hook's checks from its (unrendered) file."""
    path = Path(__file__).resolve().parent / "hooks" / "pre_gen_project.py"
    spec = importlib.util.spec_from_file_location("pre_gen_project_rules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RULES = load_rules()


class AnswerRefused(click.ClickException):
    """An answer breaks a rule.

    The ``cookiecutter`` command is a click program: it prints ``Error: <message>`` on
    stderr, with no traceback, and exits with status 1. Called from Python, it raises.
    """


def check_answer(answers, name):
    """Raise ``AnswerRefused`` when the answer ``name`` breaks a rule; render as nothing.

    An answer not given yet is not checked: a replay renders this variable without the
    answers it replays (the pre-generation hook checks those).
    """
    if name in answers:
        messages = RULES.check_answer(name, answers[name])
        if messages:
            raise AnswerRefused(" ".join(messages))
    return ""


def project_slug(project_name):
    """Return the default slug for ``project_name``: its slug, made valid when it is not.

    A slug that does not start with a letter gets a prefix, one that would shadow a module
    (``json``, ``sklearn``, a keyword) a suffix; a name with nothing to slugify gets
    ``unnamed``. The user sees the result as the default and can type another.
    """
    slug = slugify(str(project_name)) or FALLBACK_SLUG
    if not slug[0].isalpha():
        slug = f"{SLUG_AFFIX}-{slug}"
    if RULES.check_not_shadowing(slug.replace("-", "_")):
        slug = f"{slug}-{SLUG_AFFIX}"
    return slug


class AnswerChecks(Extension):
    """Adds the filters ``check_answer`` and ``project_slug``."""

    def __init__(self, environment):
        super().__init__(environment)
        environment.filters["check_answer"] = check_answer
        environment.filters["project_slug"] = project_slug
