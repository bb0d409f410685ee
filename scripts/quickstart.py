"""The quick start (`make demo`): a project from this template, working end to end.

    python scripts/quickstart.py [--output-dir build] [--python python3]

It generates the default project, installs it, trains the model, runs the project's tests,
serves the model on a free local port and shows one prediction, then stops the service.
When a Docker daemon answers it also builds the CPU image and smoke-tests the container;
when none does, it says so. It ends with what to do next.

Each step prints one line; its full output goes to a log file, named when the step fails.
A previous demo in the output folder is replaced, but only one that this script made.
Settings (environment): BASE_IMAGE, the Python base image for the Docker build (by default
the Dockerfile's own; when Docker Hub cannot be reached, the air-gapped image that
scripts/build-base-image.sh builds, with the same Python version). `make image-cpu` puts it in
place of the Dockerfile's pinned base through a BuildKit named build context.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
MARKER = ".quickstart-demo"
"""File in the output folder naming the project folder that the quick start made."""
BASE_IMAGE_SCRIPT = TEMPLATE_DIR / "scripts" / "build-base-image.sh"
READY_TIMEOUT_SECONDS = 90
# make's own variables would leak the template's make into the project's make.
MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


def shown(path):
    """Return ``path`` as a person would type it here: relative below the current folder."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


class StepFailed(Exception):
    """A step failed; the message says which one and where its log is."""


class Steps:
    """Runs numbered steps, one line each on screen, full output in one log file per step."""

    def __init__(self, log_dir):
        self.log_dir = Path(log_dir)
        self.number = 0

    def log_path(self, slug):
        """Return the log file of the next step."""
        return self.log_dir / f"{self.number:02d}-{slug}.log"

    def start(self, title):
        """Print the start of a step's line and return its number."""
        self.number += 1
        print(f"[{self.number}] {title} ".ljust(48, "."), end=" ", flush=True)
        return self.number

    @staticmethod
    def done(started, detail=""):
        """Finish a step's line with its duration."""
        print(f"ok  {time.monotonic() - started:5.1f} s  {detail}".rstrip(), flush=True)

    def run(self, title, args, cwd, env, slug, detail=None):
        """Run one command as a step; raise StepFailed with its log when it fails.

        ``detail``, a function of no arguments, returns a few words for the step's line.
        """
        self.start(title)
        log = self.log_path(slug)
        started = time.monotonic()
        with log.open("w", encoding="utf-8") as output:
            output.write(f"$ {' '.join(map(str, args))}   (in {cwd})\n\n")
            output.flush()
            result = subprocess.run(
                [str(arg) for arg in args], cwd=cwd, env=env,
                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        if result.returncode != 0:
            print("FAILED")
            raise StepFailed(f"step '{title}' failed (exit {result.returncode})", log)
        self.done(started, detail() if detail else "")
        return log


def model_summary(project_dir):
    """Return e.g. "model 0.1: accuracy 0.80 on held-out data (baseline 0.56)", or ""."""
    try:
        newest = max((project_dir / "models").glob("model-*"), key=lambda p: p.stat().st_mtime)
        metadata = json.loads((newest / "metadata.json").read_text(encoding="utf-8"))
        metrics = metadata["metrics"]
        return (f"model {metadata['version']}: accuracy {metrics['test']['accuracy']:.2f} "
                f"on held-out data (baseline {metrics['baseline_test']['accuracy']:.2f})")
    except (OSError, ValueError, KeyError, TypeError):
        return ""  # the summary is a courtesy; the step itself succeeded


def project_environment(python):
    """Return the environment for the generated project's commands.

    The template's own virtual environment is taken off PATH, so that the project's
    Makefile builds its own environment with ``python``, as it would for a new user.
    """
    env = {key: value for key, value in os.environ.items() if key not in MAKE_VARIABLES}
    template_bins = {str(Path(sys.executable).parent)}
    if "VIRTUAL_ENV" in env:
        template_bins.add(str(Path(env.pop("VIRTUAL_ENV"), "bin")))
    env["PATH"] = os.pathsep.join(
        part for part in env.get("PATH", "").split(os.pathsep) if part not in template_bins)
    env["PYTHON"] = python
    return env


def default_answers():
    """Return the default answers, derived variables included, as cookiecutter computes them."""
    from cookiecutter.generate import generate_context
    from cookiecutter.prompt import prompt_for_config

    # cookiecutter.json names a Jinja extension of the template (local_extensions.py), which
    # cookiecutter imports with the template folder on sys.path: so here too.
    if str(TEMPLATE_DIR) not in sys.path:
        sys.path.append(str(TEMPLATE_DIR))
    context = generate_context(context_file=str(TEMPLATE_DIR / "cookiecutter.json"))
    return prompt_for_config(context, no_input=True)


def clear_previous_demo(output_dir, project):
    """Remove the demo project that an earlier run made; refuse to touch anything else."""
    marker = output_dir / MARKER
    if marker.exists():
        previous = output_dir / marker.read_text(encoding="utf-8").strip()
        if previous.parent == output_dir and previous.name:
            shutil.rmtree(previous, ignore_errors=True)
        marker.unlink()
    target = output_dir / project
    if target.exists():
        raise StepFailed(
            f"{target} exists and was not made by the quick start: move it away, "
            "or pass --output-dir", None)


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_json(url, payload=None, timeout=5):
    """GET (or POST ``payload`` as JSON to) ``url``; return (status, decoded JSON or text)."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read().decode()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def example_record(project_dir, package):
    """Return the schema's example record, read with the project's own Python."""
    python = project_dir / ".venv" / "bin" / "python"
    code = f"import json; from {package}.data import SCHEMA; print(json.dumps(SCHEMA.example))"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                            check=True, cwd=project_dir)
    return json.loads(result.stdout)


def stop(process):
    """Stop the service and everything it started (its process group)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def serve_command(project_dir, project):
    """Return the command that serves the model: the project's CLI, as `make serve` runs it.

    Not `make serve` itself: the demo stops the service with SIGTERM, and make reports a
    recipe ended by a signal as an error (`make: *** [...] Terminated`), so a clean stop
    would end the log like a crash.
    """
    return [str(project_dir / ".venv" / "bin" / project), "serve"]


def serve_and_predict(steps, project_dir, answers, env):
    """Serve the model on a free port, wait until ready, show one prediction, stop it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = serve_command(project_dir, answers["project"])
    steps.start(f"{Path(command[0]).name} serve (port {port}), one prediction")
    log = steps.log_path("serve")
    started = time.monotonic()
    serve_env = {**env, "MODEL_HOST": "127.0.0.1", "MODEL_PORT": str(port)}
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(
            command, cwd=project_dir, env=serve_env, stdout=output,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                print("FAILED")
                raise StepFailed(f"the service exited (code {process.returncode}) before it "
                                 "was ready", log)
            try:
                if http_json(f"{base}/ready", timeout=2)[0] == 200:
                    break
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                print("FAILED")
                raise StepFailed(f"the service was not ready within {READY_TIMEOUT_SECONDS} s",
                                 log)
            time.sleep(0.5)
        try:
            record = example_record(project_dir, answers["package"])
            status, answer = http_json(f"{base}/predict", record, timeout=30)
        except (OSError, ValueError, subprocess.CalledProcessError) as error:
            print("FAILED")
            raise StepFailed(f"the prediction failed: {error}", log) from error
        if status != 200:
            print("FAILED")
            raise StepFailed(f"the prediction answered HTTP {status}: {answer}", log)
    finally:
        stop(process)
    steps.done(started, "(service stopped)")
    print(f"      $ curl -s -X POST {base}/predict -H 'Content-Type: application/json' \\\n"
          f"          -d '{json.dumps(record)}'")
    print(f"      {json.dumps(answer)}")


def docker_problem():
    """Return why Docker cannot be used here, or None when a daemon answers."""
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    result = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if result.returncode != 0:
        return "no Docker daemon answers (`docker info` failed)"
    return None


def dockerfile_base_image(project_dir):
    """Return the pinned base of the project's CPU Dockerfile: its first FROM image."""
    text = (project_dir / "docker" / "cpu.Dockerfile").read_text(encoding="utf-8")
    match = re.search(r"^FROM\s+(?:--\S+\s+)*(\S+)", text, re.MULTILINE)
    return match[1] if match else None


def choose_base_image(steps, project_dir):
    """Return (BASE_IMAGE or None for the Dockerfile's default, why it was chosen).

    Order: the BASE_IMAGE environment variable; the Dockerfile's default when it is present
    or can be pulled; otherwise the air-gapped image built by scripts/build-base-image.sh.
    Returns (None, reason) with reason set when no base image can be had.
    """
    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"], "from the BASE_IMAGE environment variable"
    default = dockerfile_base_image(project_dir)
    if default:
        present = subprocess.run(["docker", "image", "inspect", default], capture_output=True)
        if present.returncode == 0:
            return None, None
        steps.start("docker pull the Dockerfile's base image")
        started = time.monotonic()
        try:
            pulled = subprocess.run(["docker", "pull", default], capture_output=True,
                                    timeout=300).returncode == 0
        except subprocess.TimeoutExpired:
            pulled = False
        if pulled:
            steps.done(started)
            return None, None
        print("unreachable")
    # The script names its image after the Python version of the Dockerfile's pinned base.
    air_gapped = subprocess.run(["bash", BASE_IMAGE_SCRIPT, "--name"], capture_output=True,
                                text=True)
    if air_gapped.returncode != 0:
        return None, air_gapped.stderr.strip()
    image = air_gapped.stdout.strip()
    try:
        steps.run("Air-gapped base image (build-base-image.sh)",
                  ["bash", BASE_IMAGE_SCRIPT, image],
                  cwd=TEMPLATE_DIR, env=dict(os.environ), slug="base-image")
    except StepFailed as failure:
        return None, f"{failure.args[0]}; see {failure.args[1]}"
    return image, "Docker Hub is unreachable: built from Debian packages"


def build_and_smoke(steps, project_dir, env):
    """Build the CPU image and smoke-test its container; return what was skipped and why."""
    problem = docker_problem()
    if problem:
        return [f"make image-cpu smoke (the CPU image and its container test): {problem}"]
    base_image, reason = choose_base_image(steps, project_dir)
    if base_image is None and reason:
        return [f"make image-cpu smoke: no base image ({reason})"]
    variables = [f"BASE_IMAGE={base_image}"] if base_image else []
    if base_image:
        print(f"      BASE_IMAGE={base_image} ({reason})")
    steps.run("make image-cpu", ["make", "image-cpu", *variables], project_dir, env, "image-cpu")
    steps.run("make smoke (run the container, probe it)", ["make", "smoke", *variables],
              project_dir, env, "smoke")
    return []


def deploy_settings(project_dir):
    """Return (environments, secrets) that the project's workflows use to deploy.

    Read from the workflows themselves, so the advice stays true when they change.
    Environments come in workflow order (staging's deploy before production's release).
    """
    import yaml

    environments, secrets = {}, set()
    workflows = sorted((project_dir / ".github" / "workflows").glob("*.yml"),
                       key=lambda path: (path.name != "deploy.yml", path.name))
    for workflow in workflows:
        text = workflow.read_text(encoding="utf-8")
        secrets.update(re.findall(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)", text))
        for job in (yaml.safe_load(text) or {}).get("jobs", {}).values():
            environment = job.get("environment")
            name = environment.get("name") if isinstance(environment, dict) else environment
            if name and "${{" not in str(name):
                environments.setdefault(str(name), None)
    secrets.discard("GITHUB_TOKEN")
    return list(environments), sorted(secrets)


def next_steps(project_dir, answers, skipped):
    """Print what was skipped, then how to put the project on GitHub and deploy it."""
    if skipped:
        print("\nSkipped:")
        for line in skipped:
            print(f"  - {line}")
    where = shown(project_dir)
    owner, project = answers["github_owner"], answers["project"]
    print(f"\nThe project is in {where}. Next steps:\n")
    print(f"  Explore it:      cd {where} && make help")
    print(f"  Your own one:    cruft create {TEMPLATE_DIR}   (where it should live; "
          "pip install cruft)")
    print("  Put it on GitHub; its CI lints, tests and builds the images on every push:")
    print("    git init -b main && git add . && git commit -m 'Initial commit'")
    print(f"    git remote add origin git@github.com:{owner}/{project}.git")
    print("    git push -u origin main")
    environments, secrets = deploy_settings(project_dir)
    if environments:
        print(f"  To deploy: in Settings > Environments, create {' and '.join(environments)}")
        if secrets:
            print(f"    and give each the secret{'s' if len(secrets) > 1 else ''} "
                  f"{', '.join(secrets)} (see the project's README).")
        print("    Until then the deploy jobs skip and say why.")


def main(argv=None):
    """Run the quick start; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("build"),
                        help="folder for the demo project and logs (default: build)")
    parser.add_argument("--python", default=os.environ.get("PYTHON", "python3"),
                        help="interpreter for the project's virtual environment")
    options = parser.parse_args(argv)

    output_dir = options.output_dir.resolve()
    log_dir = output_dir / "quickstart-logs"
    answers = default_answers()
    env = project_environment(options.python)
    steps = Steps(log_dir)
    began = time.monotonic()
    print(f"Quick start: the default project of this template, end to end.\n"
          f"Logs: {shown(log_dir)}/\n")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        clear_previous_demo(output_dir, answers["project"])
        shutil.rmtree(log_dir, ignore_errors=True)
        log_dir.mkdir()
        steps.run("Generate the default project",
                  [sys.executable, "-m", "cookiecutter", "--no-input",
                   "--output-dir", output_dir, TEMPLATE_DIR],
                  cwd=TEMPLATE_DIR, env=dict(os.environ), slug="generate")
        project_dir = output_dir / answers["project"]
        (output_dir / MARKER).write_text(answers["project"] + "\n", encoding="utf-8")
        steps.run("make install", ["make", "install"], project_dir, env, "install")
        steps.run("make train", ["make", "train"], project_dir, env, "train",
                  detail=lambda: model_summary(project_dir))
        steps.run("make test", ["make", "test"], project_dir, env, "test")
        serve_and_predict(steps, project_dir, answers, env)
        skipped = build_and_smoke(steps, project_dir, env)
    except StepFailed as failure:
        message, log = failure.args
        print(f"\nQuick start stopped: {message}.")
        if log:
            print(f"Full log: {shown(log)}\n--- last lines ---")
            print("\n".join(Path(log).read_text(encoding="utf-8").splitlines()[-20:]))
        return 1
    print(f"\nDone in {time.monotonic() - began:.0f} s.")
    next_steps(project_dir, answers, skipped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
