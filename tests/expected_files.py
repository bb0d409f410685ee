"""The exact file set of a generated project, per option: the specification.

Written by hand on purpose, not derived from the post-generation hook's
PRUNE table, so a wrong prune shows up as a difference. One line per file:
its path (``{package}`` stands for the import name) and the answers it
needs. Add a file here when you add it to the template.
"""

ALWAYS = {}
GPU = {"gpu_image": "yes"}
KUBERNETES = {"deploy_target": "kubernetes"}
GPU_ON_KUBERNETES = {**GPU, **KUBERNETES}

FILES = {
    ".cookiecutter.json": ALWAYS,
    ".python-version": ALWAYS,
    "LICENSE": ALWAYS,
}


def expected_files(answers):
    """Return the set of relative paths a project baked with ``answers`` must have."""
    return {
        path.format(package=answers["package"])
        for path, needs in FILES.items()
        if all(answers[name] == value for name, value in needs.items())
    }
