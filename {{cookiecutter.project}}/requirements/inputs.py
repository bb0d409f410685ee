"""Write requirements/*.in from pyproject.toml (`make lock` runs it).

pyproject.toml is where the dependency ranges are edited. The .in files repeat them in the form
that a compiled lock needs beside it: Dependabot re-resolves a lock (requirements/X.txt) as a
whole only when its input (requirements/X.in) is next to it; without one it bumps single pins,
and can pull one of a coupled pair (pydantic, pydantic-core) into a set that does not resolve.
Never edit the .in files by hand: this script rewrites them.
"""

import sys
import tomllib
from pathlib import Path

HEADER = "# Written by requirements/inputs.py from pyproject.toml ({extra}); edit that file.\n"


def inputs(pyproject, gpu_image=False):
    """Return {file name: text} of the .in files for a parsed pyproject.toml.

    With ``gpu_image``, also gpu.in: the GPU image's dependencies, constrained by prod.txt so
    that both images run the same versions of everything they share.
    """
    project = pyproject["project"]
    extras = project.get("optional-dependencies", {})
    own = project["name"]

    def expand(requirements):
        """Replace the project's own extras (``name[plots]``) by their requirements."""
        expanded = []
        for requirement in requirements:
            if requirement.startswith(f"{own}["):
                for extra in requirement[len(own) + 1:requirement.index("]")].split(","):
                    expanded += expand(extras[extra.strip()])
            else:
                expanded.append(requirement)
        return expanded

    prod = project.get("dependencies", [])
    dev = expand(extras.get("dev", []))
    written = {
        "prod.in": HEADER.format(extra="dependencies") + "".join(f"{r}\n" for r in prod),
        "dev.in": HEADER.format(extra="dependencies and the dev extra")
        + "-r prod.in\n" + "".join(f"{r}\n" for r in dev),
    }
    if gpu_image:
        gpu = expand(extras.get("gpu", []))
        written["gpu.in"] = (HEADER.format(extra="dependencies and the gpu extra")
                             + "-c prod.txt\n-r prod.in\n" + "".join(f"{r}\n" for r in gpu))
    return written


def has_gpu_image(root):
    """Whether the project under ``root`` builds a GPU image (and so has a GPU lock)."""
    return (Path(root) / "docker" / "gpu.Dockerfile").is_file()


def stale(root="."):
    """Return the .in files under ``root``/requirements that differ from pyproject.toml."""
    root = Path(root)
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return sorted(
        name for name, text in inputs(pyproject, has_gpu_image(root)).items()
        if not (root / "requirements" / name).is_file()
        or (root / "requirements" / name).read_text(encoding="utf-8") != text
    )


def write(root="."):
    """Rewrite the .in files under ``root``/requirements; return the names written."""
    root = Path(root)
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    written = inputs(pyproject, has_gpu_image(root))
    for name, text in written.items():
        (root / "requirements" / name).write_text(text, encoding="utf-8")
    return sorted(written)


def main(argv):
    """``inputs.py`` writes the .in files; ``inputs.py --check`` exits 1 when one is stale."""
    if argv == ["--check"]:
        differing = stale()
        for name in differing:
            print(f"requirements/{name} does not say what pyproject.toml says: edit "
                  "pyproject.toml, then run `make lock`.", file=sys.stderr)
        return 1 if differing else 0
    if argv:
        print("usage: python requirements/inputs.py [--check]", file=sys.stderr)
        return 2
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
