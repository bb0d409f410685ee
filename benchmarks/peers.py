"""Peers side by side: the generated service beside MLServer and MLflow on the same fitted model.

    python benchmarks/peers.py [--output-dir build/peers] [--rounds 3] [--seconds 3]

It bakes the default project, installs it and trains its model, then saves that one fitted
scikit-learn pipeline in each peer's own format and serves it five ways, each server in its
own virtual environment, one worker process each, all pinned to one CPU:

- the generated service (``serve``) and, from the project's ``benchmarks/``, its two Flask
  apps on gunicorn (the reference with the service's validation and log, and the course's
  DataFrame + ``predict_proba``);
- **MLServer** with its scikit-learn runtime (``mlserver`` + ``mlserver-sklearn``): the
  pipeline as ``model.joblib``, V2 inference requests with the pandas codec, the
  ``predict_proba`` output; inference in the server process (``parallel_workers: 0``);
- **MLflow's scoring server** (``mlflow models serve --env-manager local``: no conda, no
  virtualenv download): the pipeline saved with ``mlflow.sklearn.save_model`` and
  ``pyfunc_predict_fn="predict_proba"``, ``dataframe_records`` requests.

Before any load, every server must return the same probability of class 1 for 50 distinct
records (to 1e-9). The load comes from the project's own generator (``benchmarks/loadgen.py``:
wrk when installed) on another CPU, one record per request at 1 and at 32 connections, in
interleaved rounds; the table shows the median and range over the rounds, and each server's
32-connection rate as a share of the service's, computed within each round.

The peers' packages come from the package index (``PEERS`` pins them) into virtual
environments under the output folder, kept between runs; nothing else is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
CONNECTIONS = (1, 32)
AGREEMENT = 1e-9
RECORDS = 50
MODEL_NAME = "churn"

# Each peer's packages, pinned; scikit-learn is added at the project's locked version so that
# every server unpickles the pipeline with the library that fitted it.
PEERS = {
    "mlserver": ["mlserver==1.7.1", "mlserver-sklearn==1.7.1"],
    "mlflow": ["mlflow==3.17.2"],
}

# Run in the project's environment, from its benchmarks/ folder: the fitted pipeline of the
# trained model as MLServer's joblib file, and distinct records generated from the schema.
EXPORT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import joblib
    from serving import distinct_records
    from {package} import loading
    from {package}.config import Settings

    out = Path(sys.argv[1])
    joblib.dump(loading.load_pipeline(Settings()).pipeline, out / "pipeline.joblib")
    (out / "records.json").write_text(json.dumps(distinct_records({records})))
""")

# Run in MLflow's environment: the same pipeline in MLflow's format. The requirements are
# given, so MLflow does not load the model in a subprocess to infer them.
MLFLOW_SAVE = textwrap.dedent("""
    import sys
    import joblib
    import mlflow.sklearn
    import sklearn

    mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2],
                              pyfunc_predict_fn="predict_proba",
                              pip_requirements=[f"scikit-learn=={sklearn.__version__}"])
""")


def run(command: list, **kwargs) -> str:
    """Run a command; its stdout, or SystemExit with its output when it fails."""
    finished = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                              **kwargs)
    if finished.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n"
                         f"{(finished.stdout + finished.stderr)[-3000:]}")
    return finished.stdout


def recorded_answers(project: Path) -> dict:
    """The answers a generated project records in ``.cookiecutter.json``."""
    return json.loads((project / ".cookiecutter.json").read_text())["cookiecutter"]


def bake(output_dir: Path) -> tuple[Path, dict]:
    """The default project, generated afresh, installed and trained; and its answers."""
    from cookiecutter.main import cookiecutter

    project_root = output_dir / "project"
    shutil.rmtree(project_root, ignore_errors=True)
    project = Path(cookiecutter(str(TEMPLATE_DIR), no_input=True, output_dir=str(project_root)))
    answers = recorded_answers(project)
    # The project's Makefile builds its own environment, not inside this one.
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if p != str(Path(sys.executable).parent))
    print(f"  baked {project}; make install train ...", flush=True)
    run(["make", "install", "train"], cwd=project, env=env)
    return project, answers


def peer_environment(output_dir: Path, name: str, sklearn_version: str) -> Path:
    """A virtual environment with the peer's pinned packages (kept between runs)."""
    venv = output_dir / f"{name}-env"
    packages = [*PEERS[name], f"scikit-learn=={sklearn_version}"]
    stamp = venv / ".packages"
    if stamp.exists() and stamp.read_text() == "\n".join(packages):
        return venv
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is needed to make the peers' environments: make install")
    print(f"  installing {' '.join(packages)} ...", flush=True)
    run([uv, "venv", "--quiet", "--clear", "--python", sys.executable, venv])
    run([uv, "pip", "install", "--quiet", "--python", venv / "bin" / "python", *packages])
    stamp.write_text("\n".join(packages))
    return venv


def mlserver_repository(folder: Path, pipeline: Path, port: int, grpc: int, metrics: int):
    """MLServer's settings and model settings around the pipeline's joblib file."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(pipeline, folder / "model.joblib")
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": grpc, "metrics_port": metrics,
        "debug": False, "parallel_workers": 0}))
    (folder / "model-settings.json").write_text(json.dumps({
        "name": MODEL_NAME, "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"}}))


def mlserver_request(records: list[dict]) -> bytes:
    """A V2 inference request of ``records`` with the pandas codec, asking for predict_proba."""
    inputs = []
    for name, value in records[0].items():
        column = [record[name] for record in records]
        text = isinstance(value, str)
        inputs.append({"name": name, "datatype": "BYTES" if text else "INT64",
                       "shape": [len(records)], "data": column,
                       **({"parameters": {"content_type": "str"}} if text else {})})
    return json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs,
                       "outputs": [{"name": "predict_proba"}]}).encode()


def positive_probabilities(server: str, answer: bytes) -> list[float]:
    """P(class 1) per record from each server's answer."""
    body = json.loads(answer)
    if server == "MLServer":
        return body["outputs"][0]["data"][1::2]  # [p0, p1] per row, flattened
    if server == "MLflow":
        return [row[1] for row in body["predictions"]]
    return body["probabilities"]


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table (Markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=TEMPLATE_DIR / "build" / "peers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--project", type=Path,
                        help="an installed, trained project of this template (default: bake one)")
    args = parser.parse_args(argv)
    output_dir = args.output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)

    if args.project:
        project = args.project.resolve()
        answers = recorded_answers(project)
    else:
        project, answers = bake(output_dir)
    sys.path.insert(0, str(project / "benchmarks"))
    import loadgen
    from servers import Placement, Server, Spread, free_port, load_average, post, rotated

    python = project / ".venv" / "bin" / "python"
    package = answers["package"]
    sklearn_version = run([python, "-c", "import sklearn; print(sklearn.__version__)"]).strip()
    work = output_dir / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    run([python, "-c", EXPORT.format(package=package, records=RECORDS), work],
        cwd=project / "benchmarks",
        env={**os.environ, "MODEL_REGISTRY_DIR": str(project / "models")})
    records = json.loads((work / "records.json").read_text())
    venvs = {name: peer_environment(output_dir, name, sklearn_version) for name in PEERS}
    run([venvs["mlflow"] / "bin" / "python", "-c", MLFLOW_SAVE, work / "pipeline.joblib",
         work / "mlflow-model"])

    placement = Placement.choose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_")}
    # MLflow's usage telemetry stays off: nothing here reaches beyond this machine.
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    env.update(MODEL_REGISTRY_DIR=str(project / "models"), MODEL_LOG_DIR=str(work / "logs"),
               MODEL_HOST="127.0.0.1", MODEL_WORKERS="1")
    record_body = json.dumps(records[0]).encode()
    ports = {name: free_port() for name in ("service", "mlserver", "mlflow")}
    mlserver_repository(work / "mlserver", work / "pipeline.joblib", ports["mlserver"],
                        free_port(), free_port())

    def gunicorn(app: str) -> tuple:
        port = free_port()
        return (Server(app, [python, "-m", "gunicorn", "--workers", "1", "--worker-class", "sync",
                             "--bind", f"127.0.0.1:{port}", "--chdir", project / "benchmarks",
                             "--log-level", "warning", f"{app}:create_app()"],
                       port, env=env, cpu=placement.server, ready_path="/predict",
                       ready_body=record_body),
                "/predict", record_body, project_batch)

    project_batch = json.dumps({"records": records}).encode()
    mlflow_env = {**env, "PATH": os.pathsep.join([str(venvs["mlflow"] / "bin"), env["PATH"]])}
    # name: (server, predict path, body of one record, body of all the records)
    setups = {
        "service": (Server("service", [python, "-m", f"{package}.cli", "serve"], ports["service"],
                           env={**env, "MODEL_PORT": str(ports["service"])},
                           cpu=placement.server, ready_path="/ready"),
                    "/predict", record_body, project_batch),
        "Flask reference": gunicorn("flask_reference"),
        "Flask course-style": gunicorn("flask_course"),
        "MLServer": (Server("MLServer", [venvs["mlserver"] / "bin" / "mlserver", "start", "."],
                            ports["mlserver"], env=env, cwd=work / "mlserver",
                            cpu=placement.server, ready_path=f"/v2/models/{MODEL_NAME}/ready"),
                     f"/v2/models/{MODEL_NAME}/infer", mlserver_request(records[:1]),
                     mlserver_request(records)),
        # MLflow runs `uvicorn` from PATH: its own environment's.
        "MLflow": (Server("MLflow", [venvs["mlflow"] / "bin" / "mlflow", "models", "serve",
                                     "--model-uri", work / "mlflow-model", "--env-manager",
                                     "local", "--host", "127.0.0.1", "--port",
                                     str(ports["mlflow"]), "--workers", "1"],
                          ports["mlflow"], env=mlflow_env, cpu=placement.server,
                          ready_path="/ping"),
                   "/invocations", json.dumps({"dataframe_records": records[:1]}).encode(),
                   json.dumps({"dataframe_records": records}).encode()),
    }
    print(f"Peers on the same fitted pipeline; load generator {loadgen.generator()}; "
          f"{placement.describe()}; {load_average()}", flush=True)
    try:
        for server, *_ in setups.values():  # all load their models at the same time
            server.launch()
        for server, *_ in setups.values():
            server.wait_ready()
        answers_by_server = {
            name: positive_probabilities(name, post(server.url(path), many))
            for name, (server, path, _, many) in setups.items()}
        reference = answers_by_server["service"]
        difference = max(abs(a - b) for values in answers_by_server.values()
                         for a, b in zip(reference, values, strict=True))
        print(f"  probabilities of {RECORDS} distinct records: largest difference between "
              f"servers {difference:.1e}", flush=True)
        if difference > AGREEMENT:
            raise SystemExit(f"the servers disagree by {difference} (more than {AGREEMENT})")
        phases = [(name, conns) for name in setups for conns in CONNECTIONS]
        results = {phase: [] for phase in phases}
        for number in range(args.rounds + 1):
            for name, conns in rotated(phases, number):
                server, path, one, _ = setups[name]
                load = loadgen.measure(server.url(path), one, conns,
                                       args.seconds if number else args.warmup,
                                       placement.generator)
                if load.errors:
                    raise SystemExit(f"{name}: {load.errors} failed requests")
                if number:
                    results[(name, conns)].append(load)
            print(f"  round {number}/{args.rounds} done; {load_average()}", flush=True)
    finally:
        for server, *_ in setups.values():
            server.stop()

    versions = {name: run([venvs[name] / "bin" / "python", "-c",
                           f"import importlib.metadata as m; print(m.version('{name}'))"]).strip()
                for name in PEERS}
    service_rates = [load.rate for load in results[("service", 32)]]
    print("\n| server | requests/s, 32 connections | share of the service's (per round) "
          "| p50 ms, 1 connection |\n|---|---|---|---|")
    labels = {"MLServer": f"MLServer {versions['mlserver']} (mlserver-sklearn)",
              "MLflow": f"MLflow {versions['mlflow']} scoring server"}
    for name in setups:
        many, one = results[(name, 32)], results[(name, 1)]
        share = Spread(tuple(load.rate / rate for load, rate in zip(many, service_rates)))
        print(f"| {labels.get(name, name)} | {Spread(tuple(x.rate for x in many)).format(',.0f')} "
              f"| {share.format('.3f')} | {Spread(tuple(x.p50_ms for x in one)).format('.2f')} |")
    print(f"\nMedian [min-max] of {args.rounds} interleaved rounds of {args.seconds} s; "
          f"scikit-learn {sklearn_version}; {placement.describe()}; after: {load_average()}.")
    print(f"Median p50 at 1 connection of the service: "
          f"{statistics.median(x.p50_ms for x in results[('service', 1)]):.3f} ms.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
