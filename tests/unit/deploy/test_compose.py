"""docker-compose.yml is validated offline (no Docker engine here) against the Compose Specification."""

import subprocess
import sys
from pathlib import Path

import yaml

from streams.settings import ENV_PREFIX, setting_fields

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
CHECK = Path(sys.executable).parent / "check-jsonschema"


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHECK), "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True, text=True, timeout=60)


def test_compose_file_matches_the_compose_specification():
    result = validate(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_catches_a_broken_file(tmp_path):
    broken = COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periode:")  # a typo in a key
    assert broken != COMPOSE.read_text()
    (tmp_path / "docker-compose.yml").write_text(broken)
    assert validate(tmp_path / "docker-compose.yml").returncode != 0


def test_services_are_wired_for_scaling_out():
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert {"kafka", "redis", "worker"} <= set(services)
    for name in ("kafka", "redis", "worker"):
        assert "healthcheck" in services[name], name
    worker = services["worker"]
    # replicas need no fixed name and no fixed host port
    assert worker["deploy"]["replicas"] >= 2 and "container_name" not in worker and "ports" not in worker
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert (ROOT / worker["build"]["context"] / worker["build"]["dockerfile"]).is_file()
    known = {ENV_PREFIX + f.name.upper() for f in setting_fields()}
    unknown = set(worker["environment"]) - known
    assert not unknown, f"compose sets variables the code does not read: {unknown}"
    assert services["kafka"]["image"].startswith("apache/kafka:4.")


def test_collector_service_runs_touchpoint_collect_on_loopback():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    collector = services["collector"]
    assert collector["command"] == ["collect"] and "healthcheck" in collector
    assert (ROOT / collector["build"]["context"] / collector["build"]["dockerfile"]).is_file()
    assert collector["depends_on"]["kafka"]["condition"] == "service_healthy"
    env = collector["environment"]
    known = {ENV_PREFIX + f.name.upper() for f in setting_fields()}
    unknown = set(env) - known
    assert not unknown, f"compose sets variables the code does not read: {unknown}"
    assert "TOUCHPOINT_WRITE_KEYS" in env  # it refuses to start without keys
    port = env["TOUCHPOINT_COLLECTOR_PORT"]
    assert all(p.startswith("127.0.0.1:") and p.endswith(f":{port}") for p in collector["ports"])
    assert f":{port}/readyz" in " ".join(collector["healthcheck"]["test"])


def test_observability_services_mount_deploy_read_only_and_have_health_checks():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ("prometheus", "alertmanager", "grafana"):
        service = services[name]
        assert "healthcheck" in service, name
        mounts = [v for v in service["volumes"] if v.startswith("./deploy/")]
        assert mounts, name
        for mount in mounts:
            source, _, rest = mount.partition(":")
            assert rest.endswith(":ro"), mount
            assert (ROOT / source).exists(), mount
        # UIs are published on the host's loopback only
        assert all(port.startswith("127.0.0.1:") for port in service.get("ports", [])), name
    prometheus = services["prometheus"]
    assert "./deploy/prometheus/prometheus.compose.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.compose.yml").read_text())["scrape_configs"][0]
    # every worker replica is found by the service's DNS name, on the port the workers listen on
    assert scrape["dns_sd_configs"][0]["names"] == ["worker"] and scrape["dns_sd_configs"][0]["port"] == 6066
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_each_worker_replica_advertises_its_own_address_not_the_wildcard():
    # issue 21 Low: every replica advertised http://0.0.0.0:6066 as its URL, so a profile lookup
    # forwarded to "the owner" went back to the asking container itself.
    import socket

    from streams.settings import Settings

    env = yaml.safe_load(COMPOSE.read_text())["services"]["worker"]["environment"]
    settings = Settings.from_env({k: str(v) for k, v in env.items() if "${" not in str(v)})
    assert settings.web_host == "0.0.0.0"
    assert settings.advertised_host not in ("0.0.0.0", "::", "")
    assert settings.advertised_host == (settings.web_advertised_host or socket.gethostname())


def test_the_faust_canonical_url_is_the_advertised_host():
    from streams.app import create_app
    from streams.settings import Settings

    settings = Settings.from_env({"TOUCHPOINT_DEV_MODE": "true", "TOUCHPOINT_WEB_HOST": "0.0.0.0",
                                  "TOUCHPOINT_WEB_ADVERTISED_HOST": "worker-3", "TOUCHPOINT_REDIS_URL": "redis://127.0.0.1:1/0"})
    app, _ = create_app(settings)
    assert str(app.conf.canonical_url) == "http://worker-3:6066"
    assert app.conf.web_bind == "0.0.0.0"
