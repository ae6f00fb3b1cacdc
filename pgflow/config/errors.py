"""Spec errors that tell the user which file, pipeline and field to fix, and how."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SpecProblem:
    file: Path
    pipeline: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = [str(self.file)]
        if self.pipeline:
            where.append(f"pipeline '{self.pipeline}'")
        if self.field:
            where.append(f"field '{self.field}'")
        return f"{': '.join(where)}: {self.message}"


class SpecError(ValueError):
    """Raised when pipeline specs are invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[SpecProblem]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"pgflow found {len(problems)} {noun} in the pipeline specs:\n{lines}")
