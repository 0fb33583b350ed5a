"""Shared fixtures: databases (SQLite and PostgreSQL), phantom series, dcmtk, free ports."""

from __future__ import annotations

import atexit
import functools
import os
import random
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pydicom.config
import pytest
from sqlalchemy.engine import Engine

from dicom_node.db.engine import make_engine
from tests.series import SyntheticSeries, make_series

pydicom.config.convert_wrong_length_to_UN = True

#: dcmtk's network tools that pynetdicom's console scripts share a name with: with the
#: virtual environment activated (its bin first on PATH) a test asking for dcmtk's
#: storescu would get pynetdicom's, whose options differ.
DCMTK_SHADOWED = ("echoscu", "findscu", "getscu", "movescu", "storescp", "storescu")


def _dcmtk_ahead_of_the_environment() -> None:
    """Put dcmtk's tools ahead of the environment's same-named scripts on PATH.

    Links to the tools found on PATH outside the interpreter's bin folder go into a
    folder of their own, put first on PATH; nothing changes where none is shadowed.
    """
    scripts = Path(sys.executable).parent.absolute()
    path = os.environ.get("PATH", "").split(os.pathsep)
    elsewhere = os.pathsep.join(p for p in path if p and Path(p).absolute() != scripts)
    shadowed = {}
    for name in DCMTK_SHADOWED:
        found = shutil.which(name)
        if found is None or Path(found).parent.absolute() != scripts:
            continue
        tool = shutil.which(name, path=elsewhere)
        if tool is not None:
            shadowed[name] = tool
    if not shadowed:
        return
    links = Path(tempfile.mkdtemp(prefix="dicom-node-dcmtk-"))
    atexit.register(shutil.rmtree, links, ignore_errors=True)
    for name, tool in shadowed.items():
        (links / name).symlink_to(tool)
    os.environ["PATH"] = os.pathsep.join([str(links), *path])


_dcmtk_ahead_of_the_environment()

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_HOST = ("127.0.0.1", 6379)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


@functools.cache
def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports handed out come from below the kernel's ephemeral range (which outgoing
# connections and bind(0) draw from), a block of its own for each pytest-xdist
# worker, drawn at random within it (another checkout's suite may run beside) and
# none twice in a run: a port a test holds unbound for a while (a peer it stops and
# starts again) is not taken meanwhile by the other worker or an outgoing socket.
_PORT_BLOCK = 1000
_handed_out: set[int] = set()
_draw = random.Random()  # seeded from the OS: untouched by a test that seeds `random`


def free_port() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    low = max(1024, min(_ephemeral_low(), 65536) - 8 * _PORT_BLOCK)
    start = low + (int(worker) % 8 if worker.isdigit() else 0) * _PORT_BLOCK
    candidates = [p for p in range(start, start + _PORT_BLOCK) if p not in _handed_out]
    _draw.shuffle(candidates)
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # the block used up: any port the kernel gives
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    _handed_out.add(port)
    return port


@pytest.fixture
def port() -> int:
    return free_port()


def _require_postgres() -> None:
    if not port_open("127.0.0.1", 5432):
        pytest.skip("PostgreSQL is not running at 127.0.0.1:5432")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    _require_postgres()
    import psycopg

    name = f"dn_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each supported kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'node.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def redis_url() -> str:
    if not port_open(*REDIS_HOST):
        pytest.skip("Redis is not running at 127.0.0.1:6379")
    import redis

    # TEST_REDIS_DB lets two checkouts run their suites at once on one Redis server;
    # each pytest-xdist worker (gw0, gw1, ...) takes the next of Redis's 16 databases
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    db = (int(os.environ.get("TEST_REDIS_DB", "11")) + int(worker or 0)) % 16
    redis.Redis(host=REDIS_HOST[0], port=REDIS_HOST[1], db=db).flushdb()
    return f"redis://{REDIS_HOST[0]}:{REDIS_HOST[1]}/{db}"


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or skip the test with the reason."""
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"real data {folder} is not present (see ../shared/data/README.md)")
    return folder


@pytest.fixture(scope="session")
def heavy_series(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSeries:
    """A lesion-heavy chest CT (about a third of the lungs infected), 512x512 at 0.75 mm."""
    return make_series(
        tmp_path_factory.mktemp("heavy"),
        patient_id="HEAVY-1",
        lesion_ml=1300.0,
        seed=3,
        size=512,
    )


@pytest.fixture(scope="session")
def mild_series(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSeries:
    return make_series(
        tmp_path_factory.mktemp("mild"), patient_id="MILD-1", lesion_ml=250.0, seed=4
    )


@pytest.fixture(scope="session")
def abdomen_series(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSeries:
    return make_series(
        tmp_path_factory.mktemp("abdomen"),
        patient_id="ABD-1",
        lesion_ml=0.0,
        seed=5,
        region="abdomen",
    )


@pytest.fixture(scope="session")
def dcmtk() -> None:
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk is not installed (apt-get install dcmtk)")
