"""The dashboard application: pages behind a login, and /metrics, /healthz, /readyz without one.

``create_app`` builds it for one node's settings and database engine; the
node serves it from a thread (:mod:`dicom_node.web.server`). The health and
metrics endpoints carry no patient data and need no login; every other page
does. Responses forbid framing, scripts and caching of patient pages.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from dicom_node.core.settings import Settings
from dicom_node.db.engine import make_session_factory
from dicom_node.web import views
from dicom_node.web.auth import Authenticator, Revocations, WebSession
from dicom_node.web.context import (
    STATIC,
    Ctx,
    LoginRequired,
    WebContext,
    check_csrf,
    context,
    make_templates,
    page,
    replace_session,
    safe_next,
    web_session,
)
from dicom_node.web.health import Readiness
from dicom_node.web.metrics import build_registry
from dicom_node.web.slices import SliceCache

LOGGER = logging.getLogger(__name__)

#: Paths that carry no patient data: no login, no session cookie
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_FAILED_LOGIN_DELAY_SECONDS = 0.5

public = APIRouter()


@public.get("/healthz")
def healthz() -> JSONResponse:
    """The process answers (nothing else is checked)."""
    return JSONResponse({"status": "ok"})


@public.get("/readyz")
def readyz(ctx: Ctx) -> JSONResponse:
    checks = ctx.readiness.run()
    failed = [check.name for check in checks if not check.ok]
    body = {
        "status": "not ready" if failed else "ready",
        "failed": failed,
        "checks": [check.to_dict() for check in checks],
    }
    return JSONResponse(body, status_code=503 if failed else 200)


@public.get("/metrics")
def metrics(ctx: Ctx) -> Response:
    return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)


@public.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request, next_path: Annotated[str, Query(alias="next")] = "/worklist"
) -> Response:
    ctx = context(request)
    return page(
        request,
        "login.html",
        {"next": safe_next(next_path), "error": None, "no_users": not ctx.settings.web.users},
    )


@public.post("/login", dependencies=[Depends(check_csrf)])
def login(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next_path: Annotated[str, Form(alias="next")] = "/worklist",
) -> Response:
    ctx = context(request)
    address = request.client.host if request.client else "?"
    values = {"next": safe_next(next_path), "username": username}
    wait = ctx.auth.throttle.wait_seconds(username[:64], address)
    if wait > 0:
        LOGGER.warning(
            "Dashboard login as %r from %s refused: too many failed attempts (%.0f s left)",
            username[:64],
            address,
            wait,
        )
        message = f"Too many failed logins; try again in {math.ceil(wait)} s."
        response = page(request, "login.html", {**values, "error": message}, status_code=429)
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    if ctx.auth.header_mode or not ctx.auth.check_password(username, password):
        ctx.auth.throttle.failed(username[:64], address)
        LOGGER.warning("Failed dashboard login as %r from %s", username[:64], address)
        time.sleep(_FAILED_LOGIN_DELAY_SECONDS)
        values["error"] = "Wrong user name or password."
        return page(request, "login.html", values, status_code=401)
    ctx.auth.throttle.succeeded(username)
    LOGGER.info("Dashboard login by %s from %s", username, address)
    replace_session(request, WebSession.logged_in(username))
    return RedirectResponse(safe_next(next_path), status_code=303)


@public.post("/logout", dependencies=[Depends(check_csrf)])
def logout(request: Request) -> Response:
    context(request).auth.revoke(web_session(request))
    replace_session(request, WebSession.anonymous())
    return RedirectResponse("/login", status_code=303)


def _middleware(
    auth: Authenticator,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    async def sessions_and_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if path in OPEN_PATHS or path.startswith("/static/"):
            response = await call_next(request)
            response.headers.update(SECURITY_HEADERS)
            return response
        session = auth.read_session(request)
        request.state.session = session or WebSession.anonymous()
        request.state.new_session = None
        response = await call_next(request)
        new: WebSession | None = request.state.new_session
        if new is not None or session is None:
            auth.write_session(response, new or web_session(request))
        response.headers.update(SECURITY_HEADERS)
        return response

    return sessions_and_headers


async def _login_required(request: Request, exc: Exception) -> Response:
    target = exc.next_path if isinstance(exc, LoginRequired) else "/worklist"
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else "error"
    if not hasattr(request.state, "session"):
        return JSONResponse({"detail": detail}, status_code=status)
    return page(request, "error.html", {"status": status, "detail": detail}, status_code=status)


def create_app(settings: Settings, engine: Engine, *, secret: bytes | None = None) -> FastAPI:
    """The dashboard for ``settings`` on ``engine`` (whose schema the caller has checked)."""
    if secret is None:
        secret = settings.web.session_secret()
    if secret is None:
        secret = secrets.token_bytes(32)
        LOGGER.info("No web session secret configured: dashboard logins end at restart")
    sessions = make_session_factory(engine)
    app = FastAPI(title="dicom-node", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = WebContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        auth=Authenticator(settings.web, secret, Revocations(sessions)),
        templates=make_templates(),
        readiness=Readiness(settings, engine),
        registry=build_registry(sessions),
        slices=SliceCache(),
    )
    app.middleware("http")(_middleware(app.state.ctx.auth))
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(public)
    app.include_router(views.router)
    return app
