"""The progression rule: more than 50 % growth of the infected volume within 48 hours.

China's COVID-19 diagnosis and treatment protocol (version 7) counts a lesion
progressing by more than 50 % within 24-48 hours as a criterion of a severe
case. For each pair of scans of one patient acquired at most ``window_hours``
apart (and at least ``min_interval_hours``, so that two reconstructions of one
examination are not compared), the growth of the infected volume is

    growth = (V_later - V_earlier) / V_earlier

and a *growth* finding is raised when it is more than ``growth_threshold``
and the infected volume grew by at least ``min_growth_ml`` (V_later -
V_earlier), so that the measurement's false-positive floor and its
scan-to-scan noise cannot make a relative growth on their own (see
docs/tracking.md, "Why a minimum growth in mL"). An earlier scan with (nearly)
no infected volume (at most ``empty_prior_max_ml``) has no meaningful growth; a
*new infection* finding is raised instead when the later scan has at least
``new_infection_min_ml`` and, like a growth, grew by at least
``min_growth_ml``, so that a scan just below ``empty_prior_max_ml`` does not
alert on less growth than one just above it. ``min_growth_ml = 0`` switches the
absolute check off (the rule as it was before). The rule stays on the infected
volume, as the protocol says; the change of the PoIR is reported alongside
because the lung volume changes with inspiration.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

# The least absolute growth of the infected volume (mL) that can raise a finding;
# the default of ``alerts.min_growth_ml`` (dicom_node/core/settings.py repeats it): the
# spread of the false-positive floor between the normal scans that
# bench/repeatability.py measures (docs/tracking.md, "Why a minimum growth in mL").
DEFAULT_MIN_GROWTH_ML = 70.0


class FindingKind(enum.StrEnum):
    GROWTH = "growth"
    NEW_INFECTION = "new_infection"


@dataclass(frozen=True)
class RuleSettings:
    window_hours: float = 48.0
    min_interval_hours: float = 1.0
    growth_threshold: float = 0.5
    empty_prior_max_ml: float = 1.0
    new_infection_min_ml: float = 10.0
    min_growth_ml: float = DEFAULT_MIN_GROWTH_ML

    def __post_init__(self) -> None:
        if not 0 <= self.min_interval_hours < self.window_hours:
            raise ValueError(
                f"min_interval_hours ({self.min_interval_hours}) must be below window_hours "
                f"({self.window_hours})"
            )
        if self.growth_threshold <= 0:
            raise ValueError(f"growth_threshold must be positive, got {self.growth_threshold}")
        if self.min_growth_ml < 0:
            raise ValueError(f"min_growth_ml must not be negative, got {self.min_growth_ml}")


@dataclass(frozen=True)
class ScanPoint:
    """One analysed scan on a patient's timeline (its current result)."""

    series_instance_uid: str
    scan_time: datetime  # timezone-aware
    infected_volume_ml: float
    lung_volume_ml: float
    poir_percent: float

    def __post_init__(self) -> None:
        if self.scan_time.tzinfo is None:
            raise ValueError(f"scan_time of {self.series_instance_uid} must be timezone-aware")


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    later: ScanPoint
    earlier: ScanPoint
    interval_hours: float
    growth: float | None  # None for a new infection

    @property
    def poir_change(self) -> float:
        """Change of the PoIR in percentage points."""
        return self.later.poir_percent - self.earlier.poir_percent

    def describe(self) -> str:
        if self.kind is FindingKind.NEW_INFECTION:
            what = (
                f"new infection: {self.later.infected_volume_ml:.0f} mL infected where the "
                f"scan {self.interval_hours:.1f} h earlier had "
                f"{self.earlier.infected_volume_ml:.1f} mL"
            )
        else:
            what = (
                f"infected volume grew by {self.growth * 100:.0f} % in "  # type: ignore[operator]
                f"{self.interval_hours:.1f} h ({self.earlier.infected_volume_ml:.0f} -> "
                f"{self.later.infected_volume_ml:.0f} mL)"
            )
        return (
            f"{what}; PoIR {self.earlier.poir_percent:.1f} -> "
            f"{self.later.poir_percent:.1f} % (prior series {self.earlier.series_instance_uid})"
        )


def compare(later: ScanPoint, earlier: ScanPoint, rules: RuleSettings) -> Finding | None:
    """The finding for one ordered pair of scans, if the rule raises one."""
    if later.series_instance_uid == earlier.series_instance_uid:
        return None
    hours = (later.scan_time - earlier.scan_time).total_seconds() / 3600.0
    if not rules.min_interval_hours <= hours <= rules.window_hours:
        return None
    grown_ml = later.infected_volume_ml - earlier.infected_volume_ml
    if rules.min_growth_ml and grown_ml < rules.min_growth_ml:
        return None  # within the measurement's floor and noise: no finding of either kind
    if earlier.infected_volume_ml <= rules.empty_prior_max_ml:
        if later.infected_volume_ml >= rules.new_infection_min_ml:
            return Finding(FindingKind.NEW_INFECTION, later, earlier, hours, None)
        return None
    growth = grown_ml / earlier.infected_volume_ml
    if growth > rules.growth_threshold:
        return Finding(FindingKind.GROWTH, later, earlier, hours, growth)
    return None


def evaluate(scan: ScanPoint, others: Iterable[ScanPoint], rules: RuleSettings) -> list[Finding]:
    """Every finding the arrival of ``scan`` creates, in either direction in time.

    ``scan`` is compared as the later scan with each earlier one in the window,
    and, when it arrived out of order, as the earlier scan with each later one.
    """
    findings = []
    for other in others:
        if other.series_instance_uid == scan.series_instance_uid:
            continue
        pair = (scan, other) if other.scan_time <= scan.scan_time else (other, scan)
        finding = compare(*pair, rules)
        if finding is not None:
            findings.append(finding)
    return findings


def comparisons(
    scan: ScanPoint, others: Iterable[ScanPoint], rules: RuleSettings
) -> list[ScanPoint]:
    """The earlier scans in ``scan``'s window, newest first (what its report compares with)."""
    window = [
        other
        for other in others
        if other.series_instance_uid != scan.series_instance_uid
        and rules.min_interval_hours
        <= (scan.scan_time - other.scan_time).total_seconds() / 3600.0
        <= rules.window_hours
    ]
    return sorted(window, key=lambda p: p.scan_time, reverse=True)
