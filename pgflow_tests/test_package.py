"""The package leaves the process environment alone; the jemalloc setting is the deployment's
(README "Memory"): the Makefile exports it to every `make` run, conftest to a bare pytest."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pgflow_tests.makefile import JEMALLOC_SETTING, MAKEFILE, exported_default

DECAY = "dirty_decay_ms:200,muzzy_decay_ms:0"
ENVIRONMENT_CHANGES = """
import json, os
before = dict(os.environ)
import pgflow
after = dict(os.environ)
print(json.dumps({k: after.get(k) for k in before.keys() | after.keys() if before.get(k) != after.get(k)}))
"""
PRINT_SETTING = f"import os, polars, deltalake; print(os.environ[{JEMALLOC_SETTING!r}])"


def _without_setting() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != JEMALLOC_SETTING}


def _run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _setting_in_make_runs(env: dict[str, str]) -> str:
    show = "show-setting: ; @echo $$" + JEMALLOC_SETTING
    return _run(["make", "-s", "-f", str(MAKEFILE), "--eval", show, "show-setting"], env)


def test_importing_pgflow_leaves_the_environment_unchanged() -> None:
    changes = _run([sys.executable, "-c", ENVIRONMENT_CHANGES], _without_setting())
    assert json.loads(changes) == {}


def test_the_makefile_exports_the_jemalloc_setting() -> None:
    assert exported_default(JEMALLOC_SETTING) == DECAY
    assert _setting_in_make_runs(_without_setting()) == DECAY


def test_a_jemalloc_setting_of_the_user_wins() -> None:
    assert _setting_in_make_runs({**os.environ, JEMALLOC_SETTING: "dirty_decay_ms:5000"}) == (
        "dirty_decay_ms:5000"
    )


def test_the_test_session_has_the_setting() -> None:
    assert JEMALLOC_SETTING in os.environ


# polars puts its own defaults in front of the setting; jemalloc takes the last value of each.


def test_polars_and_deltalake_keep_the_setting_last() -> None:
    seen = _run([sys.executable, "-c", PRINT_SETTING], {**os.environ, JEMALLOC_SETTING: DECAY})
    assert seen.endswith(DECAY)
