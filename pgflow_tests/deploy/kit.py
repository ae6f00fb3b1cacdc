"""The deployment kit's files (deploy/), read the way Docker, Compose, Helm and Dagster read them:
YAML by PyYAML (anchors and merge keys included), the Dockerfile by a small line parser."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yaml"
INSTANCE = DEPLOY / "dagster.yaml"
LOCAL_INSTANCE = DEPLOY / "dagster.local.yaml"
WORKSPACE = DEPLOY / "workspace.yaml"
HELM_VALUES = DEPLOY / "helm" / "values.yaml"
HELM_SECRETS = DEPLOY / "helm" / "secrets.example.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERIGNORE = REPO / ".dockerignore"


def repository_instance() -> Path:
    """The instance file `make dev` uses: instance/dagster.yaml (kept off the root, where Dagster
    and dg would read it with DAGSTER_HOME unset), or dagster.yaml at the root before that."""
    moved = REPO / "instance" / "dagster.yaml"
    return moved if moved.exists() else REPO / "dagster.yaml"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@dataclass
class Stage:
    """One build stage: its name, base image and instructions (keyword, argument text)."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name} has no {keyword}"
        return found[-1]

    def exec_form(self, keyword: str) -> list[str]:
        """CMD or ENTRYPOINT in exec (JSON) form, the form that receives signals."""
        value = json.loads(self.last(keyword))
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for item in shlex.split(args):
                name, _, value = item.partition("=")
                values[name] = value
        return values


def _logical_lines(text: str) -> list[str]:
    """Lines with `\\` continuations joined and comments and blank lines dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return lines


def dockerfile_stages(path: Path = DOCKERFILE) -> dict[str, Stage]:
    """The stages by name, with global ARG defaults substituted into FROM."""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in _logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest)
            parts = re.split(r"\s+AS\s+", image, flags=re.IGNORECASE)
            name = parts[1] if len(parts) > 1 else str(len(stages))
            current = stages[name] = Stage(name, parts[0])
        else:
            assert current is not None, f"{keyword} before FROM"
            current.instructions.append((keyword, rest))
    return stages


def option(argv: list[str], *names: str) -> str:
    """The value after the first of `names` in an argument list (`-p 4000`)."""
    for index, arg in enumerate(argv):
        if arg in names:
            return argv[index + 1]
    raise AssertionError(f"none of {names} in {argv}")


def env_names(environment: Mapping[str, Any] | list[str]) -> set[str]:
    """Variable names of a Compose `environment:` (mapping or NAME=value list)."""
    if isinstance(environment, Mapping):
        return set(environment)
    return {item.partition("=")[0] for item in environment}


def env_refs(node: Any) -> set[str]:
    """Every `{env: NAME}` a Dagster config references."""
    if isinstance(node, Mapping):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(*(env_refs(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(env_refs(v) for v in node)) if node else set()
    return set()


def interpolated(text: str) -> set[str]:
    """Variables Compose interpolates (`${NAME}`, `${NAME:-default}`, `${NAME:?error}`)."""
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))


def camel_to_snake(node: Any) -> Any:
    """Helm's camelCase keys as Dagster's snake_case (tag values are data, kept as written)."""
    if isinstance(node, Mapping):
        return {
            re.sub(r"([A-Z])", r"_\1", k).lower(): v if k == "value" else camel_to_snake(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [camel_to_snake(v) for v in node]
    return node
