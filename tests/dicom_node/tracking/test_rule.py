"""The progression rule on a patient with scans at 0 h, 24 h and 40 h (and 50 h)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from dicom_node.tracking.rule import (
    DEFAULT_MIN_GROWTH_ML,
    FindingKind,
    RuleSettings,
    ScanPoint,
    compare,
    comparisons,
    evaluate,
)

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
# The minimum growth is fixed at 40 mL here so that these tests do not depend on the
# default (DEFAULT_MIN_GROWTH_ML); the tests of the default use DEFAULT.
RULES = RuleSettings(min_growth_ml=40.0)
DEFAULT = RuleSettings()


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
    (finding,) = evaluate(scan("s24", 24, 55), [empty], RULES)
    assert finding.kind is FindingKind.NEW_INFECTION
    assert finding.growth is None
    assert "new infection: 55 mL infected where the scan 24.0 h earlier had 0.4 mL" in (
        finding.describe()
    )
    assert evaluate(scan("s24", 24, 8), [empty], RULES) == []  # noise on an empty lung
    # without the minimum growth, new_infection_min_ml alone decides
    old = RuleSettings(min_growth_ml=0)
    (finding,) = evaluate(scan("s24", 24, 15), [empty], old)
    assert "new infection: 15 mL infected" in finding.describe()
    assert evaluate(scan("s24", 24, 8), [empty], old) == []


# Two normal scans of one patient without pneumonia, 24 h apart, at the measurement's
# false-positive floor: +142 %, but only +51 mL.
NORMAL_FIRST_ML, NORMAL_SECOND_ML = 36.0, 87.0


def test_two_normal_scans_alert_without_a_minimum_growth() -> None:
    first, second = scan("s0", 0, NORMAL_FIRST_ML), scan("s24", 24, NORMAL_SECOND_ML)
    finding = compare(second, first, RuleSettings(min_growth_ml=0))  # the old rule
    assert finding is not None and finding.kind is FindingKind.GROWTH
    assert compare(second, first, RuleSettings(min_growth_ml=55)) is None
    assert evaluate(second, [first], RuleSettings(min_growth_ml=55)) == []


def test_floor_noise_below_the_default_minimum_growth_does_not_alert() -> None:
    assert DEFAULT.min_growth_ml == DEFAULT_MIN_GROWTH_ML > 0
    first = scan("s0", 0, NORMAL_FIRST_ML)
    below = scan("s24", 24, NORMAL_FIRST_ML + DEFAULT.min_growth_ml - 1)  # > +50 %
    assert compare(below, first, RuleSettings(min_growth_ml=0)) is not None
    assert compare(below, first, DEFAULT) is None


def test_two_normal_scans_do_not_alert_with_the_default() -> None:
    first, second = scan("s0", 0, NORMAL_FIRST_ML), scan("s24", 24, NORMAL_SECOND_ML)
    assert compare(second, first, DEFAULT) is None


def test_real_progression_still_alerts() -> None:
    finding = compare(scan("s24", 24, 200), scan("s0", 0, 100), RULES)
    assert finding is not None
    assert finding.kind is FindingKind.GROWTH
    assert finding.growth == pytest.approx(1.0)
    assert "grew by 100 % in 24.0 h (100 -> 200 mL)" in finding.describe()
    assert compare(scan("s24", 24, 500), scan("s0", 0, 200), DEFAULT) is not None


def test_minimum_growth_boundary() -> None:
    """At least min_growth_ml: exactly 40 mL more alerts, less does not."""
    base = scan("s0", 0, 40)
    finding = compare(scan("s24", 24, 80), base, RULES)  # +40 mL, +100 %
    assert finding is not None and finding.kind is FindingKind.GROWTH
    assert compare(scan("s24", 24, 79.9), base, RULES) is None  # +39.9 mL
    # both conditions are needed: +60 mL on 120 mL is +50 %, not more than
    assert compare(scan("s24", 24, 180), scan("s0", 0, 120), RULES) is None
    assert compare(scan("s24", 24, 180.1), scan("s0", 0, 120), RULES) is not None


def test_new_infection_and_growth_need_the_same_growth_in_ml() -> None:
    """A prior just below empty_prior_max_ml alerts on no less growth than one just above."""
    empty, small = scan("s0", 0, 1.0), scan("s0", 0, 1.5)  # empty_prior_max_ml is 1 mL
    assert compare(scan("s24", 24, 40), empty, RULES) is None  # 40 >= 10 mL, but +39 mL
    assert compare(scan("s24", 24, 41), empty, RULES).kind is FindingKind.NEW_INFECTION  # type: ignore[union-attr]
    assert compare(scan("s24", 24, 41), small, RULES) is None  # +39.5 mL
    assert compare(scan("s24", 24, 41.5), small, RULES).kind is FindingKind.GROWTH  # type: ignore[union-attr]
    # a minimum growth below new_infection_min_ml leaves new_infection_min_ml in charge
    rules = RuleSettings(min_growth_ml=5)
    assert compare(scan("s24", 24, 9), empty, rules) is None
    assert compare(scan("s24", 24, 10), empty, rules) is not None


@pytest.mark.parametrize("earlier", [0.0, 0.5, 1.0, 1.5, 10.0, 36.0, 100.0, 200.0])
@pytest.mark.parametrize("later", [0.0, 8.0, 10.0, 15.0, 36.0, 60.0, 87.0, 150.0, 301.0, 400.0])
def test_zero_minimum_growth_is_the_old_rule(earlier: float, later: float) -> None:
    def old_rule(v_later: float, v_earlier: float) -> FindingKind | None:
        if v_earlier <= 1.0:
            return FindingKind.NEW_INFECTION if v_later >= 10.0 else None
        return FindingKind.GROWTH if (v_later - v_earlier) / v_earlier > 0.5 else None

    finding = compare(scan("b", 24, later), scan("a", 0, earlier), RuleSettings(min_growth_ml=0))
    assert (finding and finding.kind) == old_rule(later, earlier)


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
    with pytest.raises(ValueError, match="min_growth_ml must not be negative"):
        RuleSettings(min_growth_ml=-1)
