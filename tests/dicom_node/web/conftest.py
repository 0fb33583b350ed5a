"""Fixtures of the dashboard's tests: a seeded node database and a logged-in client."""

from __future__ import annotations

import functools
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.settings import Settings
from dicom_node.db.engine import make_engine, make_session_factory
from dicom_node.db.migrate import upgrade
from dicom_node.web.app import create_app
from dicom_node.web.auth import hash_password
from tests.dicom_node.web.seed import Seeded, seed

USER, PASSWORD = "dr.ward", "correct horse battery"


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def web_settings(data_dir: Path, **extra: object) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": str(data_dir),
            "min_free_disk_mb": 0,
            "destinations": [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": 9}],
            "alerts": {
                "webhooks": [{"name": "ward", "url": "http://127.0.0.1:9/", "secret_env": "X"}]
            },
            "web": {"users": [{"name": USER, "password_hash": password_hash()}]},
            **extra,
        }
    )


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Engine, Seeded]]:
    """One seeded node for the whole session (the pages only read it, except where noted)."""
    data_dir = tmp_path_factory.mktemp("node")
    settings = web_settings(data_dir)
    settings.spool_dir.mkdir(parents=True)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    seeded = seed(make_session_factory(engine), settings)
    yield settings, engine, seeded
    engine.dispose()


@pytest.fixture
def fresh_node(
    node: tuple[Settings, Engine, Seeded], tmp_path: Path
) -> Iterator[tuple[Settings, Engine, Seeded]]:
    """A copy of the seeded node, for a test that changes records."""
    settings, engine, seeded = node
    engine.dispose()  # SQLite: the WAL is checkpointed, the copy is whole
    shutil.copytree(settings.data_dir, tmp_path / "node")
    copy = settings.model_copy(update={"data_dir": tmp_path / "node"})
    copy_engine = make_engine(copy.resolved_database_url)
    yield copy, copy_engine, seeded
    copy_engine.dispose()


@pytest.fixture
def sessions(node: tuple[Settings, Engine, Seeded]) -> sessionmaker[Session]:
    return make_session_factory(node[1])


@pytest.fixture
def client(node: tuple[Settings, Engine, Seeded]) -> TestClient:
    settings, engine, _ = node
    return TestClient(create_app(settings, engine), base_url="http://127.0.0.1")


def csrf_of(client: TestClient, path: str = "/login") -> str:
    page = client.get(path).text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def log_in(client: TestClient) -> TestClient:
    response = client.post(
        "/login",
        data={"username": USER, "password": PASSWORD, "csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return client


@pytest.fixture
def logged_in(client: TestClient) -> TestClient:
    return log_in(client)
