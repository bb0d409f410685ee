"""Generate projects from this template, as a user would with cookiecutter."""

import itertools
import json
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE_DIR = Path(__file__).resolve().parents[1]


def template_variables():
    """Return cookiecutter.json as a dict: each variable and its default or choices."""
    return json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))


def choice_variables():
    """Return {variable: [choices]} for every multiple-choice variable, default first."""
    return {
        name: value
        for name, value in template_variables().items()
        if isinstance(value, list) and not name.startswith("_")
    }


SINGLE_FILE_VARIABLES = ("python_version",)
"""Choice variables that are only written out, never decide which files exist or what they
do: ``python_version`` goes into ``.python-version`` and one line of the README. test_bake.py
bakes each of their choices on its own and proves that nothing else changes, so the
combination matrix leaves them at their defaults instead of multiplying by their choices."""


def option_combinations(leave_out=SINGLE_FILE_VARIABLES):
    """Return every combination of the choice variables but ``leave_out``, as answer dicts.

    The variables left out are not in the dicts: cookiecutter gives them their defaults.
    """
    choices = {name: values for name, values in choice_variables().items()
               if name not in leave_out}
    return [
        dict(zip(choices, values))
        for values in itertools.product(*choices.values())
    ]


ID_PREFIXES = {"python_version": "py", "gpu_image": "gpu_"}


def combination_id(answers):
    """Return a short test id for a combination, e.g. ``gpu_yes-kubernetes-MIT``."""
    return "-".join(ID_PREFIXES.get(name, "") + value for name, value in answers.items())


def bake(output_dir, answers=None, config_file=None):
    """Generate a project with ``answers`` over the defaults; return its folder.

    No prompts are shown. ``config_file`` points cookiecutter at a config
    that keeps its replay files out of the user's home folder.
    """
    project_dir = cookiecutter(
        str(TEMPLATE_DIR),
        no_input=True,
        extra_context=answers or {},
        output_dir=str(output_dir),
        config_file=str(config_file) if config_file else None,
        default_config=config_file is None,
    )
    return Path(project_dir)
