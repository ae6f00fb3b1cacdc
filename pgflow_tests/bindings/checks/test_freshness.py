"""The freshness check against the latest materialization, and the freshness rule itself."""

from __future__ import annotations

import dagster as dg
import pytest

from pgflow.bindings.checks.freshness import freshness
from pgflow.bindings.checks.names import FRESHNESS
from pgflow.config.model import FreshnessSpec
from pgflow_tests.bindings.checks.support import (
    ITEMS_KEY,
    MERGE,
    figures,
    materialize,
    pipeline,
    project_of,
    run_checks,
)
from pgflow_tests.bindings.conftest import Env


def test_freshness_against_the_latest_materialization(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = project_of(env, pipeline(MERGE, freshness={"warn_after": "1m", "fail_after": "1h"}))
    materialize(project, instance)
    latest = instance.get_latest_materialization_event(ITEMS_KEY)
    assert latest is not None

    def check_at(seconds_later: float) -> dg.AssetCheckEvaluation:
        def clock() -> float:
            return latest.timestamp + seconds_later

        return run_checks(project, instance, FRESHNESS, clock=clock)[FRESHNESS]

    fresh = check_at(30)
    assert fresh.passed, fresh.description
    assert fresh.description == "last materialized 30.0s ago (warn after 1m, fail after 1h)"

    late = check_at(61)
    assert not late.passed and late.severity == dg.AssetCheckSeverity.WARN
    assert late.description == (
        "last materialized 1m 1s ago (warn after 1m, fail after 1h): older than 1m; is its "
        "schedule or sensor running, do runs fail?"
    )
    assert figures(late) == {
        "last_materialization": pytest.approx(latest.timestamp),
        "age_seconds": 61.0,
        "warn_after": "1m",
        "fail_after": "1h",
        "state": "warn",
    }

    stale = check_at(2 * 3600)
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.ERROR
    assert figures(stale)["state"] == "fail"
    assert "older than 1h" in (stale.description or "")


def test_the_freshness_rule() -> None:
    spec = FreshnessSpec(fail_after=_td(3600), warn_after=_td(600))
    assert freshness(spec, None, 1000.0).level == "fail"
    assert freshness(spec, 1000.0, 1000.0 + 600).level == "fresh"  # at the edge: not yet
    assert freshness(spec, 1000.0, 1000.0 + 601).level == "warn"
    assert freshness(spec, 1000.0, 1000.0 + 3601).level == "fail"
    assert freshness(FreshnessSpec(fail_after=_td(60)), 0.0, 59.0).level == "fresh"
    assert freshness(spec, 0.0, 7500.0).describe() == (
        "last materialized 2h 5m ago (warn after 10m, fail after 1h)"
    )


def _td(seconds: float):
    from datetime import timedelta

    return timedelta(seconds=seconds)
