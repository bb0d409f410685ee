"""Finish a freshly generated project.

Runs inside the new project folder. It removes the files of options that
were not chosen, installs the chosen license, records the answers so the
project can take template updates later, and prints the next steps.
"""

import json
import shutil
from pathlib import Path

# Cookiecutter renders this file before running it. The answers arrive as
# JSON inside a raw string, so the unrendered file stays importable Python.
# Apostrophes are escaped because one would end the string literal early.
ANSWERS = r'''{{ cookiecutter | jsonify | replace("'", "\\u0027") }}'''

# What each answer leaves out: (variable, value) -> paths relative to the
# project root, one per line. A folder goes with everything inside it.
PRUNE = {
    ("gpu_image", "no"): [
        "docker/gpu.Dockerfile",
        "requirements/gpu.in",
        "requirements/gpu.txt",
        "deploy/k8s/training",
    ],
    ("deploy_target", "none"): [
        "deploy",
        ".github/workflows/deploy.yml",
    ],
}

LICENSES_DIR = "LICENSES"
"""Holds one ``<SPDX id>.txt`` per license choice; the chosen one becomes LICENSE."""

ANSWERS_FILE = ".cookiecutter.json"
"""The answers, in cookiecutter's replay format (``{"cookiecutter": {...}}``)."""


def paths_to_prune(answers, prune=PRUNE):
    """Return the project-relative paths that the answers leave out, in table order."""
    return [
        path
        for (variable, value), paths in prune.items()
        if answers.get(variable) == value
        for path in paths
    ]


def remove_paths(project_dir, paths):
    """Delete each path (file or folder) under ``project_dir``.

    A path that is already gone is fine: an earlier entry may have removed
    the folder it lived in.
    """
    for relative in paths:
        path = Path(project_dir, relative)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def install_license(project_dir, license_id):
    """Make ``LICENSES/<license_id>.txt`` the project's LICENSE; drop the others."""
    licenses = Path(project_dir, LICENSES_DIR)
    (licenses / f"{license_id}.txt").replace(Path(project_dir, "LICENSE"))
    shutil.rmtree(licenses)


def recorded_answers(answers):
    """Return the answers worth replaying: public variables and ``_template``.

    Cookiecutter's other private keys (output and checkout folders, render
    settings) describe one machine's run, not the project.
    """
    return {
        key: value
        for key, value in answers.items()
        if not key.startswith("_") or key == "_template"
    }


def write_answers(project_dir, answers):
    """Write the replayable answers to ``.cookiecutter.json`` in the project."""
    replay = {"cookiecutter": recorded_answers(answers)}
    text = json.dumps(replay, indent=2, ensure_ascii=False) + "\n"
    Path(project_dir, ANSWERS_FILE).write_text(text, encoding="utf-8")


def next_steps(answers):
    """Return the text that tells a new user what to do now."""
    project = answers["project"]
    owner = answers["github_owner"]
    lines = [
        "",
        f"Created {project}. Next steps:",
        "",
        f"  cd {project}",
        "  make install test    # virtual environment, dependencies, lint-free tests",
        "  make train           # train model version 0.1 on the embedded data",
        "  make serve           # serve it at http://127.0.0.1:8000 (docs at /docs)",
        "",
        "The model and its data are the churn example: replace them with yours",
        "(README.md, 'Using your own data').",
        "",
        "Put it on GitHub (CI lints, tests and builds the images on every push):",
        "",
        "  git init -b main && git add . && git commit -m 'Initial commit'",
        f"  git remote add origin git@github.com:{owner}/{project}.git",
        "  git push -u origin main",
    ]
    if answers.get("deploy_target") == "kubernetes":
        lines += [
            "",
            "To deploy, create the GitHub environments 'staging' and 'production'",
            "and give each the secret KUBE_CONFIG (a kubeconfig for its cluster).",
            "Until then, the deploy jobs skip and say why.",
        ]
    if made_by_cruft(answers):
        where = ".cruft.json (written by cruft: `cruft check`, `cruft update`)"
    else:
        where = ANSWERS_FILE
    lines += ["", f"Template updates: the answers are in {where}; see the README."]
    return "\n".join(lines)


def made_by_cruft(answers):
    """Return True when ``cruft create`` runs the generation.

    cruft adds the template commit to the context as ``_commit`` before it generates, and
    writes ``.cruft.json`` only afterwards, so the file itself cannot be seen from here.
    """
    return "_commit" in answers


def main():
    """Prune, install the license, record the answers, print the next steps."""
    answers = json.loads(ANSWERS)
    project_dir = Path.cwd()
    remove_paths(project_dir, paths_to_prune(answers))
    install_license(project_dir, answers["license"])
    write_answers(project_dir, answers)
    print(next_steps(answers))


if __name__ == "__main__":
    main()
