"""What every request handler of the dashboard needs: the context, the user, CSRF checks, pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Form, HTTPException, Request
from fastapi.templating import Jinja2Templates
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.responses import Response

from dicom_node import __version__
from dicom_node.core.settings import Settings
from dicom_node.web.auth import Authenticator, WebSession, csrf_matches
from dicom_node.web.health import Readiness
from dicom_node.web.slices import SliceCache

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class WebContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    auth: Authenticator
    templates: Jinja2Templates
    readiness: Readiness
    registry: CollectorRegistry
    slices: SliceCache


class LoginRequired(Exception):
    """A page needs a logged-in user; the handler sends the browser to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


def web_session(request: Request) -> WebSession:
    """The session the middleware read (or made) for this request."""
    session: WebSession = request.state.session
    return session


def replace_session(request: Request, session: WebSession) -> None:
    """Have the middleware send a new session cookie with the response."""
    request.state.new_session = session


def safe_next(path: str | None) -> str:
    """A local path to go back to (never another site)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/worklist"
    return path


def require_user(request: Request) -> str:
    ctx = context(request)
    user = ctx.auth.user(request, web_session(request))
    if user is not None:
        return user
    if ctx.auth.header_mode:
        raise HTTPException(401, "The reverse proxy did not name a user for this request.")
    query = f"?{request.url.query}" if request.url.query else ""
    raise LoginRequired(request.url.path + query)


def check_csrf(request: Request, csrf_token: Annotated[str, Form()] = "") -> None:
    """Refuse a form that does not carry this session's token, or comes from another site."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "This form was sent from another site.")
    if not csrf_matches(web_session(request), csrf_token):
        raise HTTPException(403, "The form's security token is missing or old; reload the page.")


def _when(value: str | datetime | None) -> str:
    """An ISO timestamp (UTC) as 2026-03-01 12:00 UTC."""
    if not value:
        return ""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return f"{when:%Y-%m-%d %H:%M} UTC"


def _da(value: str | None) -> str:
    """A DICOM DA value (PS3.5 6.2) as 2026-03-01."""
    if not value or len(value) != 8 or not value.isdigit():
        return value or ""
    return f"{value[:4]}-{value[4:6]}-{value[6:]}"


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=TEMPLATES)
    templates.env.filters["when"] = _when
    templates.env.filters["da"] = _da
    return templates


User = Annotated[str, Depends(require_user)]
Ctx = Annotated[WebContext, Depends(context)]


def page(
    request: Request, template: str, values: dict[str, Any], status_code: int = 200
) -> Response:
    """A rendered page; every page gets the user, the CSRF token and the version."""
    ctx = context(request)
    session = web_session(request)
    base = {
        "user": ctx.auth.user(request, session),
        "csrf_token": session.csrf,
        "version": __version__,
        "header_mode": ctx.auth.header_mode,
    }
    response = ctx.templates.TemplateResponse(
        request, template, {**base, **values}, status_code=status_code
    )
    response.headers["Cache-Control"] = "no-store"
    return response
