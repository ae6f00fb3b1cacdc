"""Reliability suite: repeat the figures lines tests print (e.g. `KILLS ...`) at the end of the
run, also under xdist, where a test's own output is captured on its worker."""

from __future__ import annotations

import pytest

FIGURE_PREFIXES = ("KILLS ",)
_figures: list[str] = []


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
