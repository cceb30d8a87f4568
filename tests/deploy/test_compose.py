"""docker-compose.temporal.yml: `docker-compose config` accepts it and refuses broken copies; the
services, their order (depends_on conditions), the published ports and the versions are the ones
docs/deploy.md describes; its one-shot Temporal jobs do their work on a real Temporal server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.testing import WorkflowEnvironment

from console.tools import temporal_cli
from payouts import search_attributes as sa
from runtime.settings import LedgerSettings, RabbitSettings, ReconcileSettings, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.temporal.yml"
ENV_EXAMPLE = ROOT / "deploy" / "env" / "payouts.env.example"
# What `up` needs from the operator's environment; placeholders, never real values.
REQUIRED_ENV = {
    "TEMPORAL_DB_PASSWORD": "placeholder-temporal-db",
    "LEDGER_DB_PASSWORD": "placeholder-ledger-db",
    "GRAFANA_ADMIN_PASSWORD": "placeholder-grafana",
    "PAYOUTS_CODEC_ENDPOINT": "https://payouts.example/codec",
    "OPERATOR_OIDC_PROVIDER_URL": "https://login.example/realms/ops",
    "OPERATOR_OIDC_ISSUER": "https://login.example/realms/ops",
    "OPERATOR_OIDC_AUDIENCE": "payouts-codec",
    "OPERATOR_OIDC_JWKS_URL": "https://login.example/realms/ops/protocol/openid-connect/certs",
    "TEMPORAL_UI_OIDC_CLIENT_ID": "placeholder-ui-client",
    "TEMPORAL_UI_OIDC_CLIENT_SECRET": "placeholder-ui-secret",
    "ALERTMANAGER_PAGE_WEBHOOK_URL": "https://oncall.example/page",
    "ALERTMANAGER_TICKET_WEBHOOK_URL": "https://oncall.example/ticket",
}
COMPLETED, HEALTHY, STARTED = "service_completed_successfully", "service_healthy", "service_started"


def compose_command() -> list[str]:
    """Debian's `docker-compose` (scripts/test.sh installs it), else the Docker CLI's compose plugin:
    `config` needs no Docker engine."""
    found = shutil.which("docker-compose")
    if found:
        return [found]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    pytest.fail("neither docker-compose nor `docker compose` is installed (scripts/test.sh installs docker-compose)")


def compose_config(text: str, project: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` of `text` placed where the real file lives relative to deploy/."""
    (project / "deploy" / "env").mkdir(parents=True, exist_ok=True)
    shutil.copy(ENV_EXAMPLE, project / "deploy" / "env" / "payouts.env")
    path = project / "docker-compose.temporal.yml"
    path.write_text(text)
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    return subprocess.run(
        [*compose_command(), "-p", "payouts", "-f", str(path), "config"],
        cwd=project, env={**base, **(REQUIRED_ENV if env is None else env)},
        capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = compose_config(COMPOSE.read_text(), tmp_path_factory.mktemp("compose"))
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = yaml.safe_load(result.stdout)
    return doc


def services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = doc["services"]
    return found


def depends(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in (service.get("depends_on") or {}).items()}


def test_compose_config_accepts_the_stack(rendered: dict[str, Any]) -> None:
    assert set(services(rendered)) == {
        "postgresql", "temporal-schema", "temporal", "temporal-namespace", "temporal-search-attributes",
        "temporal-ui", "ledger-db", "migrate", "schedules", "worker", "webhook", "consumer", "prometheus",
        "alertmanager", "grafana",
    }


def test_the_jobs_run_in_order_before_the_services(rendered: dict[str, Any]) -> None:
    s = services(rendered)
    ready_for_payouts = {"migrate": COMPLETED, "temporal-search-attributes": COMPLETED}
    assert depends(s["worker"]) == ready_for_payouts
    assert depends(s["webhook"]) == ready_for_payouts
    assert depends(s["schedules"]) == ready_for_payouts
    assert depends(s["consumer"]) == {"temporal-search-attributes": COMPLETED}
    assert depends(s["migrate"]) == {"ledger-db": HEALTHY}
    assert depends(s["temporal-search-attributes"]) == {"temporal-namespace": COMPLETED}
    assert depends(s["temporal-namespace"]) == {"temporal": HEALTHY}
    assert depends(s["temporal"]) == {"temporal-schema": COMPLETED}
    assert depends(s["temporal-schema"]) == {"postgresql": HEALTHY}
    assert depends(s["grafana"]) == {"prometheus": STARTED}
    assert depends(s["prometheus"]) == {"alertmanager": STARTED}
    for job in ("temporal-schema", "temporal-namespace", "temporal-search-attributes", "migrate", "schedules"):
        assert s[job]["restart"] == "no", job
    assert s["consumer"]["profiles"] == ["rabbitmq"]


def published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, published, target) of each port, in compose v1's short or v2's long form."""
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, str):
            host_ip, host_port, target = port.split("/")[0].rsplit(":", 2)
            out.append((host_ip, int(host_port), int(target)))
        else:
            out.append((port.get("host_ip", ""), int(port["published"]), int(port["target"])))
    return out


def binds(service: dict[str, Any]) -> dict[str, Path]:
    """Bind mounts, target -> source, in compose v1's short or v2's long form."""
    out = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        elif volume["type"] == "bind":
            source, target = volume["source"], volume["target"]
        else:
            continue
        if source.startswith("/"):
            out[target] = Path(source)
    return out


def test_only_the_callback_listener_faces_the_internet_the_rest_the_operators(tmp_path: Path) -> None:
    """WEBHOOK_BIND_IP (the internet, through the TLS terminator) gets the webhook's callback listener and
    nothing else; OPERATOR_BIND_IP gets the operators' pages and the internal listener (the codec)."""
    result = compose_config(COMPOSE.read_text(), tmp_path,
                            {**REQUIRED_ENV, "WEBHOOK_BIND_IP": "203.0.113.10", "OPERATOR_BIND_IP": "10.0.0.5"})
    assert result.returncode == 0, result.stderr
    ports = {name: published(service) for name, service in services(yaml.safe_load(result.stdout)).items()
             if service.get("ports")}
    assert ports == {
        "temporal-ui": [("10.0.0.5", 8233, 8080)],
        "grafana": [("10.0.0.5", 3000, 3000)],
        "alertmanager": [("10.0.0.5", 9093, 9093)],
        "webhook": [("203.0.113.10", 8080, 8080), ("10.0.0.5", 8081, 8081)],
    }
    internet = [port for found in ports.values() for port in found if port[0] == "203.0.113.10"]
    assert internet == [("203.0.113.10", 8080, 8080)]


def test_everything_is_published_on_loopback_by_default(rendered: dict[str, Any]) -> None:
    for name, service in services(rendered).items():
        assert {host for host, _, _ in published(service)} <= {"127.0.0.1"}, name


def test_the_worker_scales_and_reports_ready_on_its_own_port(rendered: dict[str, Any]) -> None:
    worker = services(rendered)["worker"]
    assert "container_name" not in worker and "ports" not in worker
    probe = " ".join(worker["healthcheck"]["test"])
    assert f"http://127.0.0.1:{WorkerSettings().metrics_port}/readyz" in probe
    assert worker["command"] == ["worker"] and worker["image"] == services(rendered)["webhook"]["image"]
    assert "127.0.0.1:8081/readyz" in " ".join(services(rendered)["webhook"]["healthcheck"]["test"])


def test_the_consumer_serves_health_and_metrics_on_its_port_and_compose_checks_it(rendered: dict[str, Any]) -> None:
    consumer = services(rendered)["consumer"]
    port = int(consumer["environment"]["RABBIT_METRICS_PORT"])
    assert port == RabbitSettings().metrics_port  # the setting's default, said twice on purpose
    probe = " ".join(consumer["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in probe
    assert "ports" not in consumer  # scraped on the stack's network, never published
    # The image makes the consumer (like the worker) listen beyond the container's loopback.
    image_env = re.findall(r"^\s+(\w+)=(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert ("RABBIT_METRICS_HOST", "0.0.0.0") in image_env
    assert re.search(rf"^EXPOSE .*\b{port}\b", (ROOT / "Dockerfile").read_text(), re.MULTILINE)


def test_the_payouts_services_reach_temporal_and_the_ledger_without_secrets_in_the_file(
    rendered: dict[str, Any],
) -> None:
    s = services(rendered)
    for name in ("migrate", "schedules", "worker", "webhook", "consumer"):
        env = s[name]["environment"]
        assert env["PAYOUTS_ENV"] == "production" and env["TEMPORAL_ADDRESS"] == "temporal:7233", name
        assert env["LEDGER_URL"] == "postgresql+asyncpg://payouts:placeholder-ledger-db@ledger-db:5432/payouts"
        assert env["PORTMONE_CERT_PATH"] == "/run/secrets/portmone_client_cert"
        assert {secret["source"] for secret in s[name]["secrets"]} == {"portmone_client_cert", "portmone_client_key"}
    raw = yaml.safe_load(COMPOSE.read_text())
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key or "PWD" in key:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), f"{name}.{key}: from the environment"
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            assert line.partition("=")[2] in ("", "CHANGE_ME"), f"{ENV_EXAMPLE.name} holds a value: {line}"


def test_versions_match_the_temporal_the_tests_run(rendered: dict[str, Any]) -> None:
    version = subprocess.run([temporal_cli(), "--version"], capture_output=True, text=True, timeout=30).stdout
    found = re.search(r"Server (\d+\.\d+\.\d+), UI (\d+\.\d+\.\d+)", version)
    assert found, version
    server, ui = found.groups()
    images = {name: service["image"] for name, service in services(rendered).items()}
    assert images["temporal"] == f"temporalio/server:{server}"
    for job in ("temporal-schema", "temporal-namespace", "temporal-search-attributes"):
        assert images[job] == f"temporalio/admin-tools:{server}"
    assert images["temporal-ui"] == f"temporalio/ui:{ui}"


def retention_days(text: str) -> int:
    found = re.fullmatch(r"(\d+)([dh])", text)
    assert found, text
    return int(found[1]) if found[2] == "d" else int(found[1]) // 24


def test_the_namespace_keeps_closed_payouts_for_the_reconciliation_window(rendered: dict[str, Any]) -> None:
    s = services(rendered)
    env = s["temporal-namespace"]["environment"]
    assert env["PAYOUTS_NAMESPACE"] == s["worker"]["environment"]["TEMPORAL_NAMESPACE"] == "payouts"
    days = retention_days(env["PAYOUTS_NAMESPACE_RETENTION"])
    # The report of day D runs on D+1 (catch-up up to 6 h) and looks back RECONCILE_ACTIVE_DAYS.
    assert days >= ReconcileSettings().active_days + 2
    # The ledger, not Temporal, is the long record (docs/deploy.md "Retention").
    assert days <= LedgerSettings().archive_retention_days


def search_attribute_job(rendered: dict[str, Any]) -> list[str]:
    job = services(rendered)["temporal-search-attributes"]
    return [*job["entrypoint"], *job["command"]]


def test_the_search_attribute_job_registers_exactly_ours(rendered: dict[str, Any]) -> None:
    argv = search_attribute_job(rendered)
    assert argv[:4] == ["temporal", "operator", "search-attribute", "create"]
    assert argv[argv.index("--namespace") + 1] == "payouts"
    registered = dict(re.findall(r"--name (\w+) --type (\w+)", " ".join(argv)))
    expected = {key.name: {"KEYWORD": "Keyword", "INT": "Int"}[key.indexed_value_type.name] for key in sa.ALL}
    assert registered == expected


def test_prometheus_and_grafana_find_the_services(rendered: dict[str, Any]) -> None:
    s = services(rendered)
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    discovered = {
        job["job_name"]: (config["names"], config["port"])
        for job in scrape["scrape_configs"] for config in job.get("dns_sd_configs", [])
    }
    assert discovered == {
        "payouts-webhook": (["webhook"], 8081),
        "payouts-worker": (["worker"], 9464),
        "payouts-consumer": (["consumer"], int(s["consumer"]["environment"]["RABBIT_METRICS_PORT"])),
    }
    managers = [target for config in scrape["alerting"]["alertmanagers"] for static in config["static_configs"]
                for target in static["targets"]]
    assert managers == ["alertmanager:9093"]
    assert s["temporal"]["environment"]["PROMETHEUS_ENDPOINT"].endswith(":8000")
    mounts = {target: Path(*source.parts[-2:]) for target, source in binds(s["grafana"]).items()}
    providers = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/payouts.yml").read_text())["providers"]
    assert mounts[providers[0]["options"]["path"]] == Path("deploy/grafana")
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_the_web_ui_signs_operators_in_and_passes_their_token_to_the_codec(rendered: dict[str, Any]) -> None:
    s = services(rendered)
    ui = s["temporal-ui"]["environment"]
    assert ui["TEMPORAL_AUTH_ENABLED"] == "true" and ui["TEMPORAL_AUTH_TYPE"] == "oidc"
    assert ui["TEMPORAL_AUTH_ISSUER_URL"] == REQUIRED_ENV["OPERATOR_OIDC_ISSUER"]
    assert ui["TEMPORAL_AUTH_CLIENT_ID"] == REQUIRED_ENV["TEMPORAL_UI_OIDC_CLIENT_ID"]
    assert ui["TEMPORAL_AUTH_CALLBACK_URL"] == "http://127.0.0.1:8233/auth/sso/callback"
    assert ui["TEMPORAL_CODEC_PASS_ACCESS_TOKEN"] == "true"
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == REQUIRED_ENV["PAYOUTS_CODEC_ENDPOINT"]
    webhook = s["webhook"]["environment"]
    assert webhook["WEBHOOK_CODEC_OIDC_ISSUER"] == ui["TEMPORAL_AUTH_ISSUER_URL"]  # the same issuer on both sides
    assert webhook["WEBHOOK_CODEC_OIDC_AUDIENCE"] == REQUIRED_ENV["OPERATOR_OIDC_AUDIENCE"]
    assert webhook["WEBHOOK_CODEC_OIDC_JWKS_URL"] == REQUIRED_ENV["OPERATOR_OIDC_JWKS_URL"]


def test_alertmanager_routes_with_receivers_from_the_environment(rendered: dict[str, Any]) -> None:
    manager = services(rendered)["alertmanager"]
    assert manager["entrypoint"] == ["/bin/sh", "/etc/alertmanager/start.sh"]
    assert binds(manager)["/etc/alertmanager"].parts[-2:] == ("deploy", "alertmanager")
    env = manager["environment"]
    assert env["ALERTMANAGER_PAGE_WEBHOOK_URL"] == REQUIRED_ENV["ALERTMANAGER_PAGE_WEBHOOK_URL"]
    assert env["ALERTMANAGER_TICKET_WEBHOOK_URL"] == REQUIRED_ENV["ALERTMANAGER_TICKET_WEBHOOK_URL"]
    template = (ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text()
    assert set(re.findall(r"\$\{([A-Z_]+)\}", template)) == {"ALERTMANAGER_PAGE_WEBHOOK_URL",
                                                              "ALERTMANAGER_TICKET_WEBHOOK_URL"}


def _break(old: str, new: str) -> str:
    text = COMPOSE.read_text()
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("broken", "env", "complaint"),
    [
        pytest.param(
            _break('command: ["worker"]\n    depends_on:\n      migrate:', 'command: ["worker"]\n    depends_on:\n'
                   "      migrations:"),
            None, "depends on service 'migrations' which is undefined", id="depends-on-a-missing-service",
        ),
        pytest.param(
            _break("    stop_grace_period: 45s\n", "    stop_grace_period: 45s\n    replicas: 3\n"),
            None, "replicas", id="unknown-key",
        ),
        pytest.param(
            COMPOSE.read_text(), {k: v for k, v in REQUIRED_ENV.items() if k != "LEDGER_DB_PASSWORD"},
            "set LEDGER_DB_PASSWORD", id="password-not-set",
        ),
    ],
)
def test_a_broken_copy_is_refused(broken: str, env: dict[str, str] | None, complaint: str, tmp_path: Path) -> None:
    result = compose_config(broken, tmp_path, env)
    assert result.returncode != 0
    assert complaint in result.stderr


def schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or "check-jsonschema"
    return subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True, text=True, timeout=60
    )


def test_the_file_also_follows_the_current_compose_spec(tmp_path: Path) -> None:
    assert schema_check(COMPOSE).returncode == 0
    broken = tmp_path / "broken.yml"
    broken.write_text(_break('    ports:\n      - "${OPERATOR_BIND_IP:-127.0.0.1}:3000:3000"', "    ports: 3000"))
    assert schema_check(broken).returncode != 0


@pytest.mark.integration
async def test_the_namespace_and_search_attribute_jobs_work_on_a_real_temporal(
    rendered: dict[str, Any], dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The jobs' own commands, run twice (a redeploy repeats them), with the CLI the tests run."""
    client = dev_env.client
    namespace = f"payouts-{tmp_path.name[-8:].replace('_', '-')}"
    cli = Path(temporal_cli()).parent
    env = {
        "PATH": f"{cli}{os.pathsep}{os.environ['PATH']}",
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "PAYOUTS_NAMESPACE": namespace,
        "TEMPORAL_CONFIG_FILE": os.devnull,
    }
    job = services(rendered)["temporal-namespace"]
    [(target, source)] = binds(job).items()
    assert job["entrypoint"] == ["/bin/sh", target]
    script = ROOT / "deploy" / "temporal" / source.name
    for retention in ("30d", "31d"):
        done = subprocess.run(["/bin/sh", str(script)], env={**env, "PAYOUTS_NAMESPACE_RETENTION": retention},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        described = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
        assert described.config.workflow_execution_retention_ttl.ToSeconds() == retention_days(retention) * 86400

    argv = search_attribute_job(rendered)
    argv[argv.index("--namespace") + 1] = namespace
    for _ in range(2):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    assert {key.name for key in sa.ALL} <= set(listed.custom_attributes)
