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


def option_combinations():
    """Return every combination of the choice variables, as answer dicts."""
    choices = choice_variables()
    return [
        dict(zip(choices, values))
        for values in itertools.product(*choices.values())
    ]


def combination_id(answers):
    """Return a short test id for a combination, e.g. ``py3.14-gpu_yes-kubernetes-MIT``."""
    return "-".join([
        f"py{answers['python_version']}",
        f"gpu_{answers['gpu_image']}",
        answers["deploy_target"],
        answers["license"],
    ])


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
