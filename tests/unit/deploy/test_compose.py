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
