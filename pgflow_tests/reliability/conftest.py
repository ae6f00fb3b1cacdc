"""Reliability suite: repeat the figures lines tests print (e.g. `KILLS ...`) at the end of the
run, also under xdist, where a test's own output is captured on its worker; the connection-fault
tests' `pipeline` fixture and the bad-spec tests' `world`."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgflow_tests.reliability.bad_specs_support import world  # noqa: F401 (a fixture)
from pgflow_tests.reliability.connection_faults_support import Pipeline, _pipeline

FIGURE_PREFIXES = ("KILLS ",)
_figures: list[str] = []


@pytest.fixture
def pipeline(
    source_uri: str, sink_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Pipeline:
    """The connection-fault tests' source, sink, spec folder and environment."""
    return _pipeline(source_uri, sink_uri, tmp_path, monkeypatch)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _figures.extend(
            line for line in report.capstdout.splitlines() if line.startswith(FIGURE_PREFIXES)
        )


def pytest_terminal_summary(terminalreporter) -> None:
    if _figures:
        terminalreporter.section("reliability figures")
        for line in sorted(_figures):
            terminalreporter.write_line(line)
