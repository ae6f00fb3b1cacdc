"""pgflow: PostgreSQL tables replicated into Postgres and Delta Lake as Dagster assets."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgflow.component import PgflowComponent

__all__ = ["PgflowComponent"]


# Lazy, so that `import pgflow` (the pgflow CLI, the specs tools) does not import Dagster;
# defs.yaml's `type: pgflow.PgflowComponent` and dg's registry load it by name.
def __getattr__(name: str) -> object:
    if name == "PgflowComponent":
        from pgflow.component import PgflowComponent

        return PgflowComponent
    raise AttributeError(f"module 'pgflow' has no attribute {name!r}")


def __dir__() -> list[str]:  # dg's registry lists the package's names with dir()
    return sorted({*globals(), *__all__})
