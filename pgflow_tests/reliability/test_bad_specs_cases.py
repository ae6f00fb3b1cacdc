"""Reliability: malformed and hostile specs fail clearly, naming file and field, and write nothing.

Every case of `specs_cases.CASES` is one spec file in its own folder. Cases caught when the
code location loads go through `load_project` (what `pgflow.definitions` runs); cases only a
run can catch (a missing secret, an unreachable host, a wrong password, a hostile predicate,
an identifier that is not in the table) are materialized: in-process with Dagster, or for the
cases marked `cli` with the real `dagster asset materialize -m pgflow.definitions` against
Postgres instance storage. Vault cases use the real `hvac` client against `FakeVault`
(pgflow_tests/connections/vault_server.py), a small local HTTP server speaking Vault's KV v2 and
AppRole API.

For each case: the error names the spec file and the field (or, for a secret, the variable or
Vault path to fix), carries the expected problem or fix, and nothing was written: the sink and
the source look exactly as before (relations, schemas, types, functions, every table's rows,
replication slots, publications, roles, databases) and no Delta folder appeared.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import patch

import dagster as dg
import psycopg
import pytest

from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow.config.errors import SpecError
from pgflow.config.loader import load_project
from pgflow_tests.bindings.conftest import REPO
from pgflow_tests.connections.vault_server import FakeVault
from pgflow_tests.reliability.bad_specs_support import World
from pgflow_tests.reliability.specs_cases import CASES
from pgflow_tests.reliability.specs_model import SPEC_FILE, Case
from pgflow_tests.reliability.specs_snapshot import (
    apply_env,
    differences,
    figures,
    snapshot,
    tree,
)

DAGSTER = str(Path(sys.executable).with_name("dagster"))
VAULT_TOKEN = "hvs.bad-specs-token"
LEAKABLE = ("Leak3d-Pw", "Vau1t-Pw", "Wr0ng-Pw-")


@dataclass
class Outcome:
    message: str  # what the user is shown: the load error, the step failure, the CLI output
    writes: list[str]  # what changed in the sink, the source or the lake


def _placeholders(world: World, value: str | None) -> str | None:
    if value == "@WRONG_PASSWORD@":
        return world.sink_uri.replace(
            psycopg.conninfo.conninfo_to_dict(world.sink_uri)["password"], "Wr0ng-Pw-1", 1
        )
    if value == "@NO_SUCH_DB@":
        return world.info.uri("no_such_db")
    return value


def run_case(world: World, case: Case, instance: dg.DagsterInstance) -> Outcome:
    folder = world.root / case.name
    specs, lake = folder / "specs", folder / "lake"
    specs.mkdir(parents=True)
    spec_file = specs / SPEC_FILE
    spec_file.write_text(case.yaml_text(lake), encoding="utf-8")
    env = apply_env(world.env, {k: _placeholders(world, v) for k, v in case.env.items()})
    env["PGFLOW_CONFIG"] = str(specs)
    with FakeVault() as vault:
        vault.add_token(VAULT_TOKEN)
        for connection_id, secret in (case.vault or {}).items():
            vault.put_secret("secret", f"pgflow/{connection_id}", secret)
        if case.vault is not None or "VAULT_ADDR" in case.env:
            env = apply_env({"VAULT_ADDR": vault.url, "VAULT_TOKEN": VAULT_TOKEN, **env}, case.env)
        before = snapshot(world.sink_uri), snapshot(world.source_uri)
        if case.cli:
            message = _run_cli(env, case)
        elif case.stage == "load":
            message = _load_error(specs, env)
        else:
            message = _run_in_process(env, instance)
        after = snapshot(world.sink_uri), snapshot(world.source_uri)
    writes = [f"sink {d}" for d in differences(before[0], after[0])]
    writes += [f"source {d}" for d in differences(before[1], after[1])]
    writes += [f"lake {p}" for p in tree(lake)]
    return Outcome(message, writes)


def _load_error(specs: Path, env: dict[str, str]) -> str:
    with pytest.raises(SpecError) as caught:
        load_project(specs, env)
    return str(caught.value)


def _run_in_process(env: dict[str, str], instance: dg.DagsterInstance) -> str:
    with patch.dict(os.environ, env, clear=True):
        project = load_project()  # what pgflow.definitions does: $PGFLOW_CONFIG
        (spec,) = project.pipelines
        result = dg.materialize(
            [pipeline_asset(spec)],
            instance=instance,
            resources=build_definitions(project).resources,
            raise_on_error=False,
        )
    assert not result.success, "the run succeeded"
    failures = [e.step_failure_data.error for e in result.all_events if e.is_step_failure]
    assert failures, "the run failed without a step failure"
    messages = []
    for error in failures:
        while error is not None:  # the headline, then what it was raised from
            messages.append(error.message)
            error = error.cause or error.context
    return "\n".join(messages)


def _run_cli(env: dict[str, str], case: Case) -> str:
    key = "/".join(("landing", "items"))
    done = subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "pgflow.definitions", "--select", key],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0, f"{case.name}: the CLI run succeeded"
    if case.stage == "load":
        assert "pgflow found" in done.stderr, done.stderr[-2000:]  # the load failed, not a run
    return done.stdout + done.stderr


SHARDS = {
    "load": [c for c in CASES if c.stage == "load" and not c.cli],
    "run": [c for c in CASES if c.stage == "run" and not c.cli],
    "cli": [c for c in CASES if c.cli],
}


@dataclass
class Tally:
    cases: int = 0
    named: int = 0  # the message names the spec file and the field
    gaps: int = 0  # known gaps (Case.gap), reported, not counted as named
    writes: int = 0  # cases after which something had changed

    def line(self, label: str = "") -> str:
        gaps = f", {self.gaps} known gaps (see report)" if self.gaps else ""
        return (
            f"BAD SPECS{label}: {self.cases} cases, {self.named} named file and field{gaps}, "
            f"{self.writes} writes"
        )


def check_case(world: World, case: Case, outcome: Outcome, tally: Tally) -> list[str]:
    """What is wrong with one case's outcome (empty: it failed as it should)."""
    found = []
    file = str(world.root / case.name / "specs" / SPEC_FILE)
    has_file = file in outcome.message
    has_field = case.names_field(outcome.message)
    tally.cases += 1
    if case.gap:
        tally.gaps += 1
        if not has_field:
            found.append(f"does not name {case.field!r}")
        if has_file:
            found.append(f"names the file now: the gap is fixed, remove it: {case.gap}")
    elif has_file and has_field:
        tally.named += 1
    else:
        found.append(f"names file: {has_file}, names field {case.field!r}: {has_field}")
    if case.text not in outcome.message:
        found.append(f"does not say {case.text!r}")
    leaked = [s for s in (*LEAKABLE, world.info.password) if s in outcome.message]
    if leaked:
        found.append(f"shows a secret: {leaked}")
    if outcome.writes:
        tally.writes += 1
        found.extend(outcome.writes)
    return found


@pytest.mark.parametrize("shard", sorted(SHARDS))
def test_every_bad_spec_names_file_and_field_and_writes_nothing(world: World, shard: str) -> None:
    cases = SHARDS[shard]
    problems: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    tally = Tally()
    with dg.instance_for_test() as instance:
        for case in cases:
            started = time.monotonic()
            outcome = run_case(world, case, instance)
            seconds[case.name] = round(time.monotonic() - started, 2)
            found = check_case(world, case, outcome, tally)
            if found:
                problems[case.name] = [*found, f"message: {outcome.message[-1500:]}"]
    print(tally.line(f" [{shard}]"), "- seconds per case:", seconds)
    _combine(shard, tally, seconds)
    report = "\n".join(f"{name}:\n    " + "\n    ".join(p) for name, p in problems.items())
    assert not problems, f"{len(problems)} case(s) failed:\n{report}"


def test_the_case_table() -> None:
    """At least 40 distinct cases, each stage and the CLI represented."""
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)
    assert all(SHARDS.values())
    assert any(c.cli and c.stage == "load" for c in CASES)
    assert any(c.cli and c.stage == "run" for c in CASES)


def _combine(shard: str, tally: Tally, seconds: dict[str, float]) -> None:
    """The shards may run on different xdist workers: each leaves its tally in a folder of
    this test run, and the one that completes the set prints the figures line for all."""
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
    folder = Path("/tmp") / f"pgflow-bad-specs-{run_id}"
    folder.mkdir(exist_ok=True)
    record = {**tally.__dict__, "seconds": round(sum(seconds.values()), 1)}
    (folder / f"{shard}.json").write_text(json.dumps(record))
    done = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    if set(done) != set(SHARDS):
        return
    total = Tally(*(sum(d[k] for d in done.values()) for k in ("cases", "named", "gaps", "writes")))
    gaps = sorted({c.gap for c in CASES if c.gap})
    figures(
        total.line(),
        suite="bad_specs",
        cases=total.cases,
        named_file_and_field=total.named,
        known_gaps=total.gaps,
        writes=total.writes,
        at_load=sum(c.stage == "load" for c in CASES),
        in_a_run=sum(c.stage == "run" for c in CASES),
        through_cli=sum(c.cli for c in CASES),
        seconds={k: d["seconds"] for k, d in done.items()},
        gap_reasons=gaps,
    )
    shutil.rmtree(folder, ignore_errors=True)
