"""The deployment templates in ci/deploy pass the tools their users will run on them:
hadolint (Dockerfiles), kubernetes-validate (manifests), promtool (alerting rules)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "ci" / "deploy"
BIN = Path(sys.executable).parent
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))


def _tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (see scripts/setup.sh and scripts/setup-system.sh)")
    return str(path)


def _documents() -> dict[str, dict]:
    docs = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    result = subprocess.run([_tool("hadolint"), str(DEPLOY / dockerfile)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_check_health_and_run_as_a_numeric_non_root_user(dockerfile: str) -> None:
    text = (DEPLOY / dockerfile).read_text()
    assert "HEALTHCHECK" in text and "/health" in text
    assert "\nUSER 10001:10001\n" in text
    assert "--api-keys-file" in text  # bound beyond loopback, so keys are required


def test_pinned_requirements_match_the_tested_constraints() -> None:
    constraints = dict(line.split("==") for line in
                       (DEPLOY.parents[1] / "constraints.txt").read_text().splitlines()
                       if "==" in line and not line.startswith("#"))
    pins = [line for line in (DEPLOY / "requirements-serve.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    for pin in pins:
        name, version = pin.split("==")
        assert constraints.get(name) == version, pin


def test_kubernetes_manifests_validate_against_the_api_schemas() -> None:
    result = subprocess.run([_tool("kubernetes-validate"), "--strict",
                             *map(str, MANIFESTS)], capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    validated = output.count(" passed for resource ")
    assert validated == len(_documents()) - 1, output
    # The ServiceMonitor is a Prometheus Operator CRD without a bundled schema: it is the
    # one document kubernetes-validate skips, and the next test checks it by hand.
    assert "Couldn't find schema for kind ServiceMonitor" in output


def test_servicemonitor_scrapes_the_service_metrics_port_with_a_key() -> None:
    docs = _documents()
    monitor = docs["ServiceMonitor/torchbridge-serve"]["spec"]
    service = docs["Service/torchbridge-serve"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    endpoint = monitor["endpoints"][0]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert f"Secret/{endpoint['authorization']['credentials']['name']}" in docs


def test_deployment_probes_resources_and_secret_wiring() -> None:
    docs = _documents()
    pod = docs["Deployment/torchbridge-serve"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    secret = pod["volumes"][0]["secret"]["secretName"]
    assert f"Secret/{secret}" in docs
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] > 30  # longer than the server's grace period
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"):
        assert f"{kind}/torchbridge-serve" in docs


def test_alerting_rules_pass_promtool_check() -> None:
    result = subprocess.run([_tool("promtool"), "check", "rules",
                             str(DEPLOY / "prometheus" / "alerts.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alerting_rules_fire_as_their_unit_tests_expect() -> None:
    result = subprocess.run([_tool("promtool"), "test", "rules", "alerts_test.yml"],
                            cwd=DEPLOY / "prometheus", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_use_the_metric_names_the_server_exports() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from torchbridge.serving import ServerConfig, create_fastapi_server, serving_state

    torch = pytest.importorskip("torch")
    app = create_fastapi_server(torch.nn.Linear(2, 2), ServerConfig())
    state = serving_state(app)
    state.metrics.observe_request("/predict", 200, 0.01)
    state.metrics.on_failure(RuntimeError("x"))
    exported = {s.name for f in text_string_to_metric_families(state.metrics.render().decode())
                for s in f.samples}
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    for name in ("torchbridge_request_duration_seconds_bucket", "torchbridge_requests_total",
                 "torchbridge_inference_failures_total"):
        assert name in rules and name in exported, name
