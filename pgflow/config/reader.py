"""A small reader over parsed YAML that records problems with their field paths.

It lets the loader report every mistake of a file at once instead of stopping at the first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal, TypeVar, overload

Report = Callable[[str, str], None]  # (field path, message)
Choice = TypeVar("Choice", bound=str)


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


class Section:
    """One mapping of a spec (e.g. `sink.strategy`), read key by key."""

    def __init__(self, data: Mapping[str, Any], path: str, report: Report):
        self._data = data
        self._path = path
        self._report = report
        self._seen: set[str] = set()

    def field(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def problem(self, key: str, message: str) -> None:
        self._report(self.field(key), message)

    def keys(self) -> list[str]:
        return [str(k) for k in self._data]

    def has(self, key: str) -> bool:
        return key in self._data

    def raw(self, key: str) -> Any:
        self._seen.add(key)
        return self._data.get(key)

    def text(
        self,
        key: str,
        *,
        required: bool = False,
        choices: Iterable[str] | None = None,
        default: str | None = None,
    ) -> str | None:
        value = self.raw(key)
        allowed = list(choices) if choices is not None else None
        if value is None or (required and value == ""):
            if required:
                hint = f"; one of: {', '.join(allowed)}" if allowed else ""
                self.problem(key, f"is required{hint}")
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(key, f"must be a string, got {_describe(value)}")
            return default
        value = str(value)
        if allowed is not None and value not in allowed:
            self.problem(key, f"'{value}' is not allowed; use one of: {', '.join(allowed)}")
            return default
        return value

    @overload
    def choice(self, key: str, choices: tuple[Choice, ...], *, default: Choice) -> Choice: ...

    @overload
    def choice(
        self, key: str, choices: tuple[Choice, ...], *, required: Literal[True]
    ) -> Choice | None: ...

    def choice(
        self,
        key: str,
        choices: tuple[Choice, ...],
        *,
        default: Choice | None = None,
        required: bool = False,
    ) -> Choice | None:
        """`text` limited to `choices`, typed as one of them (e.g. a Literal of model.py)."""
        value = self.text(key, required=required, choices=choices, default=default)
        return next((choice for choice in choices if choice == value), None)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, got {_describe(value)}")
            return default
        return value

    def positive_int(self, key: str) -> int | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.problem(key, f"must be a positive integer, got {_describe(value)}")
            return None
        return value

    def names(self, key: str) -> tuple[str, ...] | None:
        """A list of column names; a single string is accepted as a one-element list."""
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v for v in value)
        ):
            self.problem(key, f"must be a non-empty list of column names, got {_describe(value)}")
            return None
        return tuple(value)

    def section(self, key: str, *, required: bool = False) -> Section | None:
        value = self.raw(key)
        if value is None:
            if required:
                self.problem(key, "is required (a mapping)")
            return None
        if not isinstance(value, Mapping):
            self.problem(key, f"must be a mapping, got {_describe(value)}")
            return None
        return Section(value, self.field(key), self._report)

    def entries(self, key: str, *, required: bool = False) -> Iterator[tuple[str, Section | None]]:
        """Each `name: {...}` of the mapping under `key` (e.g. `connections:`), with its Section;
        None for an entry that is null (reported when `required`) or not a mapping (reported).
        Lazily, so each entry's problems are reported before the next entry's."""
        declared = self.section(key)
        if declared is None:
            return
        for name in declared.keys():  # noqa: SIM118 (a Section, not a dict)
            yield name, declared.section(name, required=required)

    def finish(self) -> None:
        """Report keys nobody read: almost always a typo of an allowed key."""
        unknown = sorted(str(k) for k in self._data if k not in self._seen)
        allowed = ", ".join(sorted(self._seen))
        for key in unknown:
            self.problem(key, f"is not a known field; allowed here: {allowed}")
