"""pgflow uses Dagster's public API only: its private modules (`dagster._...`) change without
notice between releases. Tests may still reach into them; the package may not."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pgflow"
PRIVATE = re.compile(r"\bdagster(_[a-z_]+)?\._")  # dagster._core, dagster_shared._x, ...


def test_the_package_imports_no_private_dagster_module() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert found == []


def test_the_pattern_finds_private_imports() -> None:
    assert PRIVATE.search("from dagster._utils.schedules import is_valid_cron_string")
    assert PRIVATE.search("    from dagster._core.execution.retries import RetryMode")
    assert PRIVATE.search("import dagster_shared._check")
    assert not PRIVATE.search("import dagster as dg")
    assert not PRIVATE.search("from dagster_shared import check")
