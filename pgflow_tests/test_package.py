"""Process-wide settings the package makes on import."""

from __future__ import annotations

import os
import subprocess
import sys

SETTING = "_RJEM_MALLOC_CONF"
PRINT_IT = f"import os, pgflow, polars, deltalake; print(os.environ[{SETTING!r}])"


def _setting_seen_by_polars(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PRINT_IT], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


# polars puts its own defaults in front of the setting; jemalloc takes the last value of each.


def test_importing_pgflow_shortens_jemalloc_page_decay() -> None:
    env = {k: v for k, v in os.environ.items() if k != SETTING}
    assert _setting_seen_by_polars(env).endswith("dirty_decay_ms:200,muzzy_decay_ms:0")


def test_a_jemalloc_setting_of_the_user_wins() -> None:
    env = {**os.environ, SETTING: "dirty_decay_ms:5000"}
    seen = _setting_seen_by_polars(env)
    assert seen.endswith("dirty_decay_ms:5000") and "dirty_decay_ms:200" not in seen
