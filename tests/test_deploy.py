"""deploy/: the compose file, the Dockerfiles and the systemd units are valid and agree."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dicom_node.core.settings import load_settings
from tests.conftest import free_port
from tests.integration.support import NodeProcess

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SERVICES = {"postgres", "redis", "migrate", "node", "worker", "orthanc"}


def _compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = {str(k): str(v) for k, v in service.get("environment", {}).items()}
    return {k: v.replace("${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in deploy/.env}", "pw")
            for k, v in env.items()}  # fmt: skip


def _compose_command() -> list[str]:
    """``docker compose`` (the plugin) or, without it, Debian's ``docker-compose``."""
    docker = shutil.which("docker")
    if docker is not None:
        version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
        if version.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is not None:
        return [legacy]
    pytest.skip("neither the Docker Compose plugin nor docker-compose is installed")


def test_docker_compose_config_passes() -> None:
    compose = _compose_command()
    result = subprocess.run(
        [*compose, "-f", str(COMPOSE), "config", "--services"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "POSTGRES_PASSWORD": "pw"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == SERVICES
    # without the password, compose refuses to start instead of using an empty one
    unset = subprocess.run(
        [*compose, "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin"},
        timeout=60,
    )
    assert unset.returncode != 0 and "POSTGRES_PASSWORD" in unset.stderr


def test_compose_services_settings_and_shared_data() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == SERVICES
    for name in SERVICES - {"migrate"}:
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    # every DICOM_NODE_* variable is a valid setting
    for name in ("migrate", "node", "worker"):
        env = _environment(services[name])
        settings = load_settings(environ=env)
        assert settings.database_url and settings.database_url.startswith("postgresql://")
        assert settings.broker_url == "redis://redis:6379/0"
        assert "pw" not in repr(settings)
    # the node and the worker share data_dir (spool and results) at the same path
    data_dir = _environment(services["node"])["DICOM_NODE_DATA_DIR"]
    for name in ("node", "worker"):
        assert f"data:{data_dir}" in services[name]["volumes"]
    assert services["node"]["image"] == services["migrate"]["image"]
    # the secrets are not in the file
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?" in COMPOSE.read_text()


def _copies(dockerfile: Path) -> list[str]:
    return re.findall(r"^COPY (?!--from)(\S+) ", dockerfile.read_text(), flags=re.MULTILINE)


@pytest.mark.parametrize("name", ["node", "worker-cpu", "worker-cuda"])
def test_dockerfiles_copy_what_exists(name: str) -> None:
    dockerfile = DEPLOY / "docker" / f"{name}.Dockerfile"
    for source in _copies(dockerfile):
        assert (ROOT / source).exists(), f"{dockerfile.name} copies missing {source}"
    text = dockerfile.read_text()
    if name == "node":
        assert not re.search(r"pip install[^\n]*(torch|\[worker\])", text)
        assert "pip install ." in text
    else:
        assert "torch==$TORCH_VERSION" in text and "TORCH_VERSION=2.13.0" in text
        assert '".[worker]"' in text
        assert "worker = [" in (ROOT / "pyproject.toml").read_text()
    for service in _compose()["services"].values():
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    executable = sys.executable  # verify needs an executable that exists
    units = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/opt/dicom-node/bin/dicom-node", executable))
        units.append(str(copy))
    assert len(units) == 2
    result = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if any(Path(u).name in line for u in units)]  # fmt: skip
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


@pytest.mark.integration
def test_the_listener_starts_without_torch(tmp_path: Path) -> None:
    """What the node image relies on: `serve --no-worker` with torch not importable."""
    blocker = tmp_path / "no-torch"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nfor name in ('torch', 'monai', 'torchvision'):\n    sys.modules[name] = None\n"
    )
    node = NodeProcess(
        tmp_path / "data",
        free_port(),
        command=("serve", "--no-worker"),
        env={"PYTHONPATH": str(blocker)},
    )
    node.start()
    assert node.stop() == 0, node.log()
