"""The progression rule on a patient with scans at 0 h, 24 h and 40 h (and 50 h)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from dicom_node.tracking.rule import (
    FindingKind,
    RuleSettings,
    ScanPoint,
    compare,
    comparisons,
    evaluate,
)

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
RULES = RuleSettings()


def scan(name: str, hours: float, infected_ml: float, lung_ml: float = 4000.0) -> ScanPoint:
    return ScanPoint(
        name, T0 + timedelta(hours=hours), infected_ml, lung_ml, infected_ml / lung_ml * 100
    )


def test_alert_exactly_when_growth_exceeds_half() -> None:
    base = scan("s0", 0, 200)
    assert compare(scan("s24", 24, 301), base, RULES).kind is FindingKind.GROWTH  # type: ignore[union-attr]
    assert compare(scan("s24", 24, 300), base, RULES) is None  # 50 %: not more than
    assert compare(scan("s24", 24, 298), base, RULES) is None  # 49 %
    finding = compare(scan("s40", 40, 400), base, RULES)
    assert finding is not None
    assert finding.growth == pytest.approx(1.0)
    assert finding.interval_hours == pytest.approx(40)
    assert "grew by 100 % in 40.0 h (200 -> 400 mL)" in finding.describe()
    assert finding.poir_change == pytest.approx(5.0)


def test_window_limits() -> None:
    base = scan("s0", 0, 200)
    assert compare(scan("s48", 48, 400), base, RULES) is not None  # up to 48 h
    assert compare(scan("s50", 50, 400), base, RULES) is None
    # two reconstructions of one examination are not compared
    assert compare(scan("recon", 0.1, 400), base, RULES) is None
    assert compare(scan("s0", 24, 400), base, RULES) is None  # the same series


def test_evaluate_in_order_and_out_of_order() -> None:
    s0, s24, s40 = scan("s0", 0, 200), scan("s24", 24, 280), scan("s40", 40, 350)
    # in order: s24 vs s0 is +40 % (none); s40 vs s0 +75 % (alert), vs s24 +25 % (none)
    assert evaluate(s24, [s0], RULES) == []
    (finding,) = evaluate(s40, [s0, s24], RULES)
    assert (finding.later, finding.earlier) == (s40, s0)
    # out of order: s0 arrives last and creates the s40/s0 pair
    (late,) = evaluate(s0, [s24, s40], RULES)
    assert (late.later, late.earlier) == (s40, s0)
    assert comparisons(s40, [s0, s24], RULES) == [s24, s0]


def test_new_infection() -> None:
    empty = scan("s0", 0, 0.4)
    (finding,) = evaluate(scan("s24", 24, 15), [empty], RULES)
    assert finding.kind is FindingKind.NEW_INFECTION
    assert finding.growth is None
    assert "new infection: 15 mL infected" in finding.describe()
    assert evaluate(scan("s24", 24, 8), [empty], RULES) == []  # noise on an empty lung


def test_times_with_time_zones_compare_as_instants() -> None:
    berlin = timezone(timedelta(hours=1))
    base = ScanPoint("a", datetime(2026, 2, 1, 9, 0, tzinfo=berlin), 200, 4000, 5)
    later = ScanPoint("b", datetime(2026, 2, 3, 8, 0, tzinfo=UTC), 400, 4000, 10)  # 48 h
    assert compare(later, base, RULES) is not None
    with pytest.raises(ValueError, match="timezone-aware"):
        ScanPoint("c", datetime(2026, 2, 1), 1, 1, 1)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="min_interval_hours"):
        RuleSettings(window_hours=1, min_interval_hours=2)
