"""`pgflow report` after `dagster asset materialize` runs, as users run both: the last run's
sink metrics read from the Dagster instance of $DAGSTER_HOME (the shipped dagster.yaml on
Postgres storage), and the error of a run that failed after it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psycopg

from pgflow_tests.bindings.conftest import REPO, DagsterSetup
from pgflow_tests.bindings.test_definitions_cli import latest_materialization, materialize
from pgflow_tests.bindings.test_try_history import TerminateTheFirstLoad

PGFLOW = str(Path(sys.executable).with_name("pgflow"))
RUN_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def report(env: dict[str, str]) -> str:
    done = subprocess.run(
        [PGFLOW, "report"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_report_prints_the_last_runs_metrics_then_a_later_failure(dagster_setup: DagsterSetup):
    setup = dagster_setup
    before = report(setup.env).splitlines()
    assert before[1].startswith("  landing/items") and before[2:] == ["    last run: none recorded"]
    loaded = materialize(setup, "landing/items")
    assert loaded.returncode == 0, loaded.stderr[-3000:]

    lines = report(setup.env).splitlines()
    target = next(i for i, line in enumerate(lines) if line.startswith("  landing/items"))
    assert lines[target].endswith("landing.items: 300 rows")
    metrics = lines[target + 1]
    assert re.fullmatch(
        rf"    last run {WHEN} \(run {RUN_ID}\): 300 rows written, 1 batch, "
        r"300\.0 avg batch rows, \d+\.\d{3} s writing, 0 retries",
        metrics,
    ), metrics
    assert not any("last failure" in line for line in lines)

    # The source table goes away: the next run fails once (not transient), the target stays.
    with psycopg.connect(setup.source_uri, autocommit=True) as conn:
        conn.execute("DROP TABLE items")
    failed = materialize(setup, "landing/items")
    assert failed.returncode != 0

    lines = report(setup.env).splitlines()
    target = next(i for i, line in enumerate(lines) if line.startswith("  landing/items"))
    assert lines[target].endswith("landing.items: 300 rows")
    assert lines[target + 1] == metrics  # the last materialization is still the first run's
    failure = lines[target + 2]
    assert re.match(rf"    last failure {WHEN} \(run {RUN_ID}\): Failure: pipeline ", failure)
    assert failure.endswith(
        "source table public.items not found on connection 'shop'; check source.table"
    ), failure
    run_ids = re.findall(RUN_ID, metrics + failure)
    assert len(set(run_ids)) == 2  # the failed run is another run than the materialization
    assert setup.password not in "\n".join(lines)


def test_a_run_retried_through_the_cli_reports_its_retry(dagster_setup: DagsterSetup):
    setup = dagster_setup
    setup.env["PGFLOW_RETRY_DELAY_SECONDS"] = "0"
    fault = TerminateTheFirstLoad(setup.sink_uri)
    loaded = materialize(setup, "landing/items")
    fault.join()
    assert fault.terminated and loaded.returncode == 0, loaded.stderr[-3000:]
    metadata = latest_materialization(setup).metadata
    assert metadata["pgflow/retries"].value == 1
    assert "AdminShutdown: terminating connection" in metadata["pgflow/last_error"].value

    lines = report(setup.env).splitlines()
    target = next(i for i, line in enumerate(lines) if line.startswith("  landing/items"))
    assert lines[target + 1].startswith("    last run ")
    assert lines[target + 1].endswith(" s writing, 1 retry")
    assert len(lines) == target + 2  # the run succeeded: no failure line


def test_report_without_dagster_home_prints_how_to_point_at_the_instance(
    dagster_setup: DagsterSetup,
):
    env = {k: v for k, v in dagster_setup.env.items() if k != "DAGSTER_HOME"}
    out = report(env).splitlines()
    assert out[0] == "pgflow: 1 pipeline(s); targets now hold:"
    assert out[1] == (  # no run yet: no target, on one line
        "  landing/items                -> warehouse:landing.items: unavailable (relation "
        '"landing.items" does not exist LINE 1: SELECT count(*) FROM "landing"."items" ^)'
    )
    assert out[-1].startswith("metrics: the runs' metrics live in the Dagster instance; set ")
    assert "DAGSTER_HOME" in out[-1] and len(out) == 3


def test_report_with_an_instance_that_does_not_open_says_so_and_goes_on(
    dagster_setup: DagsterSetup,
):
    env = {**dagster_setup.env, "DAGSTER_PG_PASSWORD": "not-the-password"}
    out = report(env).splitlines()
    assert len(out) == 3 and out[1].startswith("  landing/items")
    assert out[-1] == (
        "metrics: the Dagster instance of $DAGSTER_HOME did not open "
        "(DagsterPostgresException: too many retries for DB connection)"
    )
    assert "not-the-password" not in out[-1] and dagster_setup.password not in out[-1]
