"""When a scan was acquired, from its headers (PS3.3 C.7.6.1, C.7.3.1, C.7.2.1, C.12.1).

In order of preference: Acquisition DateTime; Acquisition Date and Time;
Series Date and Time; Study Date and Time. The earliest value over the
instances is the scan's time. A time zone comes from the value itself (a DT
with an offset), else Timezone Offset From UTC (0008,0201), else the node's
default time zone; the source used is recorded with the time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

from pydicom.dataset import Dataset
from pydicom.valuerep import DA, DT, TM


@dataclass(frozen=True)
class ScanTime:
    when: datetime  # UTC
    source: str  # e.g. "AcquisitionDateTime, TimezoneOffsetFromUTC"


def _offset(ds: Dataset) -> tzinfo | None:
    value = str(ds.get("TimezoneOffsetFromUTC", "") or "").strip()
    if len(value) != 5 or value[0] not in "+-" or not value[1:].isdigit():
        return None
    minutes = int(value[1:3]) * 60 + int(value[3:5])
    return timezone(timedelta(minutes=minutes if value[0] == "+" else -minutes))


def _parse_dt(value: object) -> datetime | None:
    text = str(value or "").strip()
    if len(text) < 8:
        return None
    try:
        parsed = DT(text)
    except (ValueError, TypeError):
        return None
    return parsed if isinstance(parsed, datetime) else None


def _parse_da_tm(da: object, tm: object) -> datetime | None:
    day_text, time_text = str(da or "").strip(), str(tm or "").strip()
    if len(day_text) != 8:
        return None
    try:
        day = DA(day_text)
        moment = TM(time_text) if time_text else time(0)
    except (ValueError, TypeError):
        return None
    if not isinstance(day, date):
        return None
    return datetime.combine(day, moment if isinstance(moment, time) else time(0))


_CANDIDATES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AcquisitionDateTime", ("AcquisitionDateTime",)),
    ("AcquisitionDate/Time", ("AcquisitionDate", "AcquisitionTime")),
    ("SeriesDate/Time", ("SeriesDate", "SeriesTime")),
    ("StudyDate/Time", ("StudyDate", "StudyTime")),
)


def scan_time(datasets: Sequence[Dataset], default_zone: tzinfo) -> ScanTime | None:
    """The acquisition time of a series, or None when no date is recorded at all."""
    for label, keywords in _CANDIDATES:
        found: list[tuple[datetime, str]] = []
        for ds in datasets:
            values = [ds.get(k) for k in keywords]
            moment = _parse_dt(values[0]) if len(keywords) == 1 else _parse_da_tm(*values)
            if moment is None:
                continue
            zone_label = "offset in the value"
            if moment.tzinfo is None:
                zone = _offset(ds)
                zone_label = "TimezoneOffsetFromUTC" if zone else f"node time zone {default_zone}"
                moment = moment.replace(tzinfo=zone or default_zone)
            found.append((moment.astimezone(UTC), zone_label))
        if found:
            when, zone_label = min(found)
            return ScanTime(when, f"{label} ({zone_label})")
    return None
