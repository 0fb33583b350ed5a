"""Login, sessions, CSRF and proxy-header authentication of the dashboard."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner
from sqlalchemy import select
from sqlalchemy.engine import Engine

from dicom_node.cli.main import main
from dicom_node.core.settings import Settings, SettingsError, load_settings
from dicom_node.db.engine import make_session_factory
from dicom_node.db.models import Alert, AlertState
from dicom_node.web import auth
from dicom_node.web.app import create_app
from dicom_node.web.auth import SESSION_COOKIE, hash_password, verify_password
from tests.dicom_node.web.conftest import PASSWORD, USER, csrf_of, log_in, web_settings
from tests.dicom_node.web.seed import Seeded

Node = tuple[Settings, Engine, Seeded]
PAGES = ["/worklist", "/alerts", "/system", "/patient?id=P-1001", "/worklist?q=P-1001"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_need_a_login(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=/")
    assert "P-1001" not in response.text


def test_slice_images_need_a_login(client: TestClient, node: Node) -> None:
    uid = node[2].scans[0]
    response = client.get(f"/series/{uid}/slice.png", follow_redirects=False)
    assert response.status_code == 303
    assert not response.content.startswith(b"\x89PNG")


def test_wrong_password_is_refused(client: TestClient) -> None:
    token = csrf_of(client)
    for username, password in ((USER, "wrong"), ("nobody", PASSWORD), (USER, "")):
        response = client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": token},
            follow_redirects=False,
        )
        assert response.status_code == 401
        assert "Wrong user name or password" in response.text
    assert client.get("/worklist", follow_redirects=False).status_code == 303


def test_login_sets_a_strict_http_only_cookie_and_returns_to_the_page(client: TestClient) -> None:
    client.get("/login?next=/alerts")
    response = client.post(
        "/login",
        data={
            "username": USER,
            "password": PASSWORD,
            "csrf_token": csrf_of(client, "/login?next=/alerts"),
            "next": "/alerts",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/alerts"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert USER.encode() not in cookie.encode() or "." in cookie  # signed, not a bare name
    page = client.get("/alerts")
    assert page.status_code == 200 and USER in page.text


def test_login_never_redirects_off_site(client: TestClient) -> None:
    response = client.post(
        "/login",
        data={
            "username": USER,
            "password": PASSWORD,
            "csrf_token": csrf_of(client),
            "next": "//evil.example.org/",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/worklist"


def test_forged_or_foreign_session_cookie_is_ignored(client: TestClient, node: Node) -> None:
    log_in(client)
    other = TestClient(create_app(node[0], node[1], secret=b"another secret of 32 bytes....."))
    other.cookies.set(SESSION_COOKIE, client.cookies[SESSION_COOKIE])
    assert other.get("/worklist", follow_redirects=False).status_code == 303


def test_login_form_without_csrf_token_is_refused(client: TestClient) -> None:
    client.get("/login")
    response = client.post("/login", data={"username": USER, "password": PASSWORD})
    assert response.status_code == 403
    assert client.get("/worklist", follow_redirects=False).status_code == 303


def test_acknowledge_without_or_with_a_wrong_token_is_refused(fresh_node: Node) -> None:
    settings, engine, _ = fresh_node
    client = log_in(TestClient(create_app(settings, engine), base_url="http://127.0.0.1"))
    sessions = make_session_factory(engine)
    with sessions() as session:
        alert_id = session.scalars(select(Alert.id)).first()
    for data, headers in (
        ({}, {}),
        ({"csrf_token": "guessed"}, {}),
        ({"csrf_token": csrf_of(client, "/alerts")}, {"Origin": "http://evil.example.org"}),
    ):
        response = client.post(f"/alerts/{alert_id}/ack", data=data, headers=headers)
        assert response.status_code == 403
    with sessions() as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None and alert.state is not AlertState.ACKNOWLEDGED
    token = csrf_of(client, "/alerts")
    response = client.post(f"/alerts/{alert_id}/ack", data={"csrf_token": token})
    assert response.status_code == 200
    with sessions() as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None and alert.state is AlertState.ACKNOWLEDGED
        assert alert.acknowledged_by == USER


def test_logout_ends_the_session(logged_in: TestClient) -> None:
    token = csrf_of(logged_in, "/worklist")
    assert logged_in.post("/logout", data={"csrf_token": token}).status_code == 200
    assert logged_in.get("/worklist", follow_redirects=False).status_code == 303


def test_logout_revokes_a_copied_cookie_in_every_process(node: Node) -> None:
    """A cookie copied before the logout stops working, here and in another dashboard process."""
    secret = b"one secret for both processes"
    client = log_in(TestClient(create_app(node[0], node[1], secret=secret)))
    copied = client.cookies[SESSION_COOKIE]
    other_process = TestClient(create_app(node[0], node[1], secret=secret))
    other_process.cookies.set(SESSION_COOKIE, copied)
    assert other_process.get("/worklist", follow_redirects=False).status_code == 200
    token = csrf_of(client, "/worklist")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 200
    replay = TestClient(client.app)
    replay.cookies.set(SESSION_COOKIE, copied)
    assert replay.get("/worklist", follow_redirects=False).status_code == 303
    assert other_process.get("/worklist", follow_redirects=False).status_code == 303


def test_failed_logins_are_throttled_per_user_and_per_address(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = node[0].model_copy(
        update={"web": node[0].web.model_copy(update={"login_attempts": 3})}
    )
    app = create_app(settings, node[1])
    attacker = TestClient(app, client=("10.6.6.6", 5000))

    def attempt(client: TestClient, username: str, password: str) -> int:
        response = client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": csrf_of(client)},
            follow_redirects=False,
        )
        return response.status_code

    assert [attempt(attacker, USER, f"guess{i}") for i in range(3)] == [401, 401, 401]
    hashed: list[str] = []
    real_verify = auth.verify_password

    def counting_verify(password: str, encoded: str) -> bool:
        hashed.append(password)
        return real_verify(password, encoded)

    monkeypatch.setattr(auth, "verify_password", counting_verify)
    assert attempt(attacker, USER, PASSWORD) == 429  # even the right password, meanwhile
    assert hashed == []  # refused before any password hashing
    response = attacker.post(
        "/login",
        data={"username": "someone", "password": "x", "csrf_token": csrf_of(attacker)},
        follow_redirects=False,
    )
    assert response.status_code == 429  # the address is locked out too
    assert int(response.headers["Retry-After"]) > 0
    assert "Too many failed logins" in response.text
    # the user name is locked out from another address as well ...
    elsewhere = TestClient(app, client=("10.7.7.7", 5000))
    assert attempt(elsewhere, USER, PASSWORD) == 429
    # ... but another user from another address is not (and is hashed: the check above
    # watched the hashing the node really does)
    assert attempt(elsewhere, "nobody", "x") == 401
    assert hashed == ["x"]


def test_a_session_cannot_outlive_its_hours(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = node[0].model_copy(
        update={"web": node[0].web.model_copy(update={"session_hours": 1})}
    )
    client = log_in(TestClient(create_app(settings, node[1])))
    assert client.get("/worklist", follow_redirects=False).status_code == 200
    later = int(time.time()) + 3601
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    assert client.get("/worklist", follow_redirects=False).status_code == 303


def _header_app(node: Node, proxy: str) -> TestClient:
    settings = node[0].model_copy(
        update={
            "web": node[0].web.model_copy(
                update={"auth": "header", "trusted_proxies": ("10.1.2.0/24",)}
            )
        }
    )
    return TestClient(create_app(settings, node[1]), client=(proxy, 40000))


def test_header_auth_trusts_only_the_configured_proxies(node: Node) -> None:
    trusted = _header_app(node, "10.1.2.3")
    page = trusted.get("/worklist", headers={"X-Forwarded-User": "proxy.user"})
    assert page.status_code == 200 and "proxy.user" in page.text and "P-1001" in page.text
    assert trusted.get("/worklist").status_code == 401
    stranger = _header_app(node, "192.168.7.7")
    refused = stranger.get("/worklist", headers={"X-Forwarded-User": "proxy.user"})
    assert refused.status_code == 401 and "P-1001" not in refused.text


def test_header_mode_needs_trusted_proxies(tmp_path: object) -> None:
    with pytest.raises(SettingsError, match="trusted_proxies"):
        load_settings(environ={"DICOM_NODE_WEB__AUTH": "header"})


def test_password_hashes() -> None:
    encoded = hash_password("s3cret pass")
    assert encoded.startswith("scrypt$16384$8$1$")
    assert verify_password("s3cret pass", encoded)
    assert not verify_password("s3cret pas", encoded)
    assert not verify_password("s3cret pass", "scrypt$1$2$3$bad$hash")
    assert hash_password("x") != hash_password("x")  # salted


def test_settings_take_users_from_the_environment_and_refuse_plain_passwords() -> None:
    users = f'[{{"name": "ana", "password_hash": "{hash_password("pw")}"}}]'
    settings = load_settings(
        environ={"DICOM_NODE_WEB__USERS": users, "DICOM_NODE_HTTP_PORT": "9090"}
    )
    assert settings.web.users[0].name == "ana" and settings.http_port == 9090
    assert settings.http_host == "127.0.0.1"
    with pytest.raises(SettingsError, match="password_hash"):
        load_settings(environ={"DICOM_NODE_WEB__USERS": '[{"name": "ana", "password_hash": "pw"}]'})
    with pytest.raises(SettingsError, match="session_secret_env"):
        load_settings(environ={"DICOM_NODE_WEB__SESSION_SECRET_ENV": "DICOM_NODE_SECRET"})


def test_session_secret_from_a_file(tmp_path: object, node: Node) -> None:
    from pathlib import Path

    secret = Path(str(tmp_path)) / "secret"
    secret.write_text("0123456789abcdef0123\n")
    settings = web_settings(node[0].data_dir, web={"session_secret_file": str(secret)})
    assert settings.web.session_secret() == b"0123456789abcdef0123"
    secret.write_text("short")
    with pytest.raises(ValueError, match="at least 16"):
        settings.web.session_secret()
    assert "0123456789" not in repr(settings)


def test_hash_password_command() -> None:
    result = CliRunner().invoke(
        main, ["web", "hash-password", "--password-stdin"], input="pa55word!\n"
    )
    assert result.exit_code == 0, result.output
    assert verify_password("pa55word!", result.output.strip())
    short = CliRunner().invoke(main, ["web", "hash-password", "--password-stdin"], input="abc\n")
    assert short.exit_code != 0 and "at least 8" in short.output
