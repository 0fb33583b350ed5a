"""The dashboard's pages and actions, each behind the login.

They read through the same queries as the command line (``dicom-node
status``, ``patient timeline``, ``alerts``, ``outbox``), so both show the same
records; the actions (acknowledge an alert, retry failed deliveries) call the
same functions as ``dicom-node alerts ack`` and ``dicom-node outbox retry``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from dicom_node.db import stats
from dicom_node.db.models import AlertState, DeliveryState, JobState
from dicom_node.db.queries import list_series, recent_refusals
from dicom_node.delivery.outbox import listing, retry
from dicom_node.tracking.alerts import acknowledge, list_alerts
from dicom_node.tracking.timeline import find_patient, timeline
from dicom_node.web.charts import Point, time_chart
from dicom_node.web.context import Ctx, User, check_csrf, page, safe_next
from dicom_node.web.slices import SliceUnavailable

LOGGER = logging.getLogger(__name__)

router = APIRouter()
JOB_STATES = [state.value for state in JobState]
ALERT_STATES = [state.value for state in AlertState]
OUTBOX_STATES = [state.value for state in DeliveryState]
POIR_COLOR, VOLUME_COLOR = "#1f77b4", "#ff7f0e"


def _choice(value: str, allowed: list[str]) -> str | None:
    return value if value in allowed else None


@router.get("/")
def home(user: User) -> Response:
    return RedirectResponse("/worklist", status_code=303)


@router.get("/worklist")
def worklist(
    request: Request,
    ctx: Ctx,
    user: User,
    state: str = "",
    q: str = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Recent series: patient, study, state, measurements and why a series was not analysed."""
    with ctx.sessions() as session:
        rows = list_series(session, limit, state=_choice(state, JOB_STATES), search=q or None)
    return page(
        request,
        "worklist.html",
        {"rows": rows, "states": JOB_STATES, "state": state, "q": q, "limit": limit},
    )


def _charts(data: dict[str, Any]) -> dict[str, Any]:
    scans = data["scans"]
    pairs = [(a["prior_series_instance_uid"], a["series_instance_uid"]) for a in data["alerts"]]

    def points(field: str) -> list[Point]:
        return [
            Point(s["series_instance_uid"], datetime.fromisoformat(s["scan_time"]), s[field])
            for s in scans
        ]

    return {
        "poir": time_chart(
            points("poir_percent"),
            title="Proportion of infected lung (PoIR)",
            unit="%",
            color=POIR_COLOR,
            alerts=pairs,
            css_id="chart-poir",
        ),
        "volume": time_chart(
            points("infected_volume_ml"),
            title="Infected volume",
            unit="mL",
            color=VOLUME_COLOR,
            alerts=pairs,
            css_id="chart-volume",
        ),
    }


@router.get("/patient")
def patient(
    request: Request,
    ctx: Ctx,
    user: User,
    patient_id: Annotated[str, Query(alias="id", min_length=1)],
    issuer: str | None = None,
) -> Response:
    """A patient's scans over time with the trend charts, alerts and one slice per scan."""
    with ctx.sessions() as session:
        patients = find_patient(session, patient_id, issuer)
        if not patients:
            raise HTTPException(404, f"There is no patient with Patient ID {patient_id!r}.")
        if len(patients) > 1:
            choices = [p.issuer_of_patient_id for p in patients]
            return page(
                request, "choose_issuer.html", {"patient_id": patient_id, "choices": choices}
            )
        data = timeline(session, patients[0])
    alerted = {a["series_instance_uid"] for a in data["alerts"]}
    return page(
        request,
        "patient.html",
        {"data": data, "charts": _charts(data), "alerted": alerted},
    )


@router.get("/series/{series_uid}/slice.png")
def slice_png(ctx: Ctx, user: User, series_uid: str) -> Response:
    """The most affected axial slice of the series' current result, with its contours."""
    with ctx.sessions() as session:
        try:
            png = ctx.slices.get(session, ctx.settings, series_uid)
        except SliceUnavailable as exc:
            raise HTTPException(404, str(exc)) from exc
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


@router.get("/alerts")
def alerts(
    request: Request,
    ctx: Ctx,
    user: User,
    state: str = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Response:
    """Progression alerts, newest first, each with an acknowledge button."""
    chosen = _choice(state, ALERT_STATES)
    with ctx.sessions() as session:
        rows = list_alerts(session, AlertState(chosen) if chosen else None, limit)
    return page(request, "alerts.html", {"rows": rows, "states": ALERT_STATES, "state": state})


@router.post("/alerts/{alert_id}/ack", dependencies=[Depends(check_csrf)])
def acknowledge_alert(
    ctx: Ctx,
    user: User,
    alert_id: int,
    next_path: Annotated[str, Form(alias="next")] = "/alerts",
) -> Response:
    with ctx.sessions.begin() as session:
        if acknowledge(session, alert_id, user) is None:
            raise HTTPException(404, f"There is no alert {alert_id}.")
    LOGGER.info("Alert %d acknowledged by %s on the dashboard", alert_id, user)
    return RedirectResponse(safe_next(next_path), status_code=303)


@router.get("/system")
def system(
    request: Request,
    ctx: Ctx,
    user: User,
    state: str = "",
    retried: int | None = None,
) -> Response:
    """Readiness, the analysis queue, the workers, refusals and the outbox."""
    checks = ctx.readiness.run()
    chosen = _choice(state, OUTBOX_STATES)
    now = datetime.now(UTC)
    with ctx.sessions() as session:
        jobs = stats.jobs_by_state(session)
        waiting_since = stats.oldest_waiting_job(session)
        workers = stats.worker_activity(session, now - timedelta(hours=24))
        outbox_counts = stats.outbox_by_state(session)
        entries = listing(session, DeliveryState(chosen) if chosen else None, 100)
        refusals = recent_refusals(session, 10)
    return page(
        request,
        "system.html",
        {
            "checks": checks,
            "jobs": jobs,
            "waiting_minutes": (now - waiting_since).total_seconds() / 60
            if waiting_since
            else None,
            "workers": workers,
            "outbox_counts": outbox_counts,
            "entries": entries,
            "refusals": refusals,
            "states": OUTBOX_STATES,
            "state": state,
            "retried": retried,
        },
    )


@router.post("/outbox/retry", dependencies=[Depends(check_csrf)])
def retry_outbox(
    ctx: Ctx,
    user: User,
    entry_id: Annotated[int | None, Form()] = None,
    all_failed: Annotated[bool, Form()] = False,
) -> Response:
    """Send failed entries again: one, or every failed one."""
    if entry_id is None and not all_failed:
        raise HTTPException(400, "Say which entry to retry.")
    with ctx.sessions.begin() as session:
        count = retry(session, None if all_failed else [entry_id or 0], ctx.settings.results)
    LOGGER.info("%d outbox entries queued again from the dashboard by %s", count, user)
    return RedirectResponse(f"/system?retried={count}", status_code=303)
