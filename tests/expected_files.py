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
    # Project root
    ".cookiecutter.json": ALWAYS,
    ".flake8": ALWAYS,
    ".gitignore": ALWAYS,
    ".pre-commit-config.yaml": ALWAYS,
    ".python-version": ALWAYS,
    "LICENSE": ALWAYS,
    "Makefile": ALWAYS,
    "README.md": ALWAYS,
    "pyproject.toml": ALWAYS,
    "requirements/dev.in": ALWAYS,
    "requirements/dev.txt": ALWAYS,
    "requirements/inputs.py": ALWAYS,
    "requirements/prod.in": ALWAYS,
    "requirements/prod.txt": ALWAYS,
    "requirements/gpu.in": GPU,
    "requirements/gpu.txt": GPU,
    # Inputs to copy: the schema's example record, and records to predict with a header line
    "examples/record.json": ALWAYS,
    "examples/records.csv": ALWAYS,
    # The package
    "src/{package}/__init__.py": ALWAYS,
    "src/{package}/cli.py": ALWAYS,
    "src/{package}/config.py": ALWAYS,
    "src/{package}/data.py": ALWAYS,
    "src/{package}/logs.py": ALWAYS,
    "src/{package}/training.py": ALWAYS,
    "src/{package}/pipeline_scoring.py": ALWAYS,
    "src/{package}/loading.py": ALWAYS,
    "src/{package}/monitoring.py": ALWAYS,
    "src/{package}/registry.py": ALWAYS,
    "src/{package}/device.py": ALWAYS,
    "src/{package}/scoring.py": ALWAYS,
    "src/{package}/serving/__init__.py": ALWAYS,
    "src/{package}/serving/service.py": ALWAYS,
    "src/{package}/serving/api_types.py": ALWAYS,
    "src/{package}/serving/responses.py": ALWAYS,
    "src/{package}/serving/metrics.py": ALWAYS,
    "src/{package}/serving/model_state.py": ALWAYS,
    "src/{package}/serving/predict_endpoint.py": ALWAYS,
    # The package's tests
    "tests/conftest.py": ALWAYS,
    "tests/test_api.py": ALWAYS,
    "tests/test_api_concurrency.py": ALWAYS,
    "tests/test_api_faults.py": ALWAYS,
    "tests/test_api_fuzz.py": ALWAYS,
    "tests/test_api_server.py": ALWAYS,
    "tests/test_cli.py": ALWAYS,
    "tests/test_config.py": ALWAYS,
    "tests/test_data.py": ALWAYS,
    "tests/test_input_rules.py": ALWAYS,
    "tests/test_logs.py": ALWAYS,
    "tests/test_training.py": ALWAYS,
    "tests/test_layout.py": ALWAYS,
    "tests/test_monitoring.py": ALWAYS,
    "tests/test_registry.py": ALWAYS,
    "tests/test_scoring.py": ALWAYS,
    "tests/test_device.py": ALWAYS,
    "tests/test_benchmarks.py": ALWAYS,
    "tests/test_image_benchmark.py": ALWAYS,
    # Benchmarks
    "benchmarks/bare_asgi.py": ALWAYS,
    "benchmarks/flask_course.py": ALWAYS,
    "benchmarks/flask_reference.py": ALWAYS,
    "benchmarks/images.py": ALWAYS,
    "benchmarks/loadgen.py": ALWAYS,
    "benchmarks/post.lua": ALWAYS,
    "benchmarks/servers.py": ALWAYS,
    "benchmarks/monitoring.py": ALWAYS,
    "benchmarks/serving.py": ALWAYS,
    "benchmarks/training.py": ALWAYS,
    # Images
    ".dockerignore": ALWAYS,
    "docker/cpu.Dockerfile": ALWAYS,
    "docker/gpu.Dockerfile": GPU,
    "docker/model/README.md": ALWAYS,
    "docker/smoke.py": ALWAYS,
    # GitHub
    ".github/actions/image-setup/action.yml": ALWAYS,
    ".github/actions/setup/action.yml": ALWAYS,
    ".github/dependabot.yml": ALWAYS,
    ".github/workflows/ci.yml": ALWAYS,
    ".github/workflows/deploy.yml": KUBERNETES,
    ".github/workflows/image-build.yml": ALWAYS,
    ".github/workflows/image-publish.yml": ALWAYS,
    ".github/workflows/release.yml": ALWAYS,
    # Kubernetes
    "deploy/k8s/deploy.sh": KUBERNETES,
    "deploy/k8s/base/kustomization.yaml": KUBERNETES,
    "deploy/k8s/base/logs-pvc.yaml": KUBERNETES,
    "deploy/k8s/base/monitor-cronjob.yaml": KUBERNETES,
    "deploy/k8s/base/server-deployment.yaml": KUBERNETES,
    "deploy/k8s/base/server-hpa.yaml": KUBERNETES,
    "deploy/k8s/base/server-pdb.yaml": KUBERNETES,
    "deploy/k8s/base/server-service.yaml": KUBERNETES,
    "deploy/k8s/overlays/production/kustomization.yaml": KUBERNETES,
    "deploy/k8s/overlays/staging/kustomization.yaml": KUBERNETES,
    "deploy/k8s/setup/base/deployer.yaml": KUBERNETES,
    "deploy/k8s/setup/base/kustomization.yaml": KUBERNETES,
    "deploy/k8s/setup/base/namespace.yaml": KUBERNETES,
    "deploy/k8s/setup/production/kustomization.yaml": KUBERNETES,
    "deploy/k8s/setup/staging/kustomization.yaml": KUBERNETES,
    "deploy/k8s/training/kustomization.yaml": GPU_ON_KUBERNETES,
    "deploy/k8s/training/models-pvc.yaml": GPU_ON_KUBERNETES,
    "deploy/k8s/training/train-gpu-job.yaml": GPU_ON_KUBERNETES,
}


def expected_files(answers):
    """Return the set of relative paths a project baked with ``answers`` must have."""
    return {
        path.format(package=answers["package"])
        for path, needs in FILES.items()
        if all(answers[name] == value for name, value in needs.items())
    }
