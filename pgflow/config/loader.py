"""Find, parse and validate pipeline specs.

A spec file holds one pipeline (top-level `source` and `sink`, the dpone format) or a list of
them under `pipelines:`; any file may also declare `connections:`. Validation runs when the
code location loads and reports every problem with its file, pipeline and field.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from pgflow.config.cdc_groups import with_group_publications
from pgflow.config.environment import config_path
from pgflow.config.errors import SpecError, SpecProblem
from pgflow.config.lines import LinedDict, empty_lined, first_key_line, line_of
from pgflow.config.model import ConnectionSpec, GroupSpec, PipelineSpec, Project
from pgflow.config.project_checks import check_groups, check_project, merge_groups
from pgflow.config.query_cache import QueryInspector, with_query_tables
from pgflow.config.read_pipeline import read_pipeline
from pgflow.config.read_project import FILE_KEYS, read_connections, read_groups
from pgflow.config.read_wildcard import WildcardEntry, is_wildcard, read_wildcard
from pgflow.config.reader import Section
from pgflow.config.wildcard_loading import expand_wildcards, explicit_specs_win
from pgflow.config.wildcards import TableLister, with_sessions


def _refuse_repeated_keys(node: yaml.MappingNode) -> None:
    """A key repeated in one mapping is an error, not a silent overwrite (`mode:
    incremental_merge` ... `mode: full_refresh` would otherwise keep the last one)."""
    seen: set[str] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
            continue  # `<<: *anchor` merges may be overridden by explicit keys
        if key_node.value in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"found key '{key_node.value}' twice; YAML would silently keep the last "
                "value: write each key once",
                key_node.start_mark,
            )
        seen.add(key_node.value)


_MAP_TAG = "tag:yaml.org,2002:map"


class _SpecYamlLoader(yaml.SafeLoader):
    """safe_load with repeated keys refused; PyYAML's own parser, whose errors quote the line.
    Mappings remember their lines (config/lines.py)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        _refuse_repeated_keys(node)
        return super().construct_mapping(node, deep=deep)

    def construct_lined_map(self, node: yaml.MappingNode) -> Iterator[LinedDict]:
        data = empty_lined(node)
        yield data
        data.update(self.construct_mapping(node))


_SpecYamlLoader.add_constructor(_MAP_TAG, _SpecYamlLoader.construct_lined_map)


# libyaml parses a 1,000-pipeline file ~10x faster than the pure-Python parser.
try:
    from yaml import CSafeLoader as _FastBase
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _FastBase  # type: ignore[assignment]


class _FastSpecYamlLoader(_FastBase):
    """The same loader on libyaml when PyYAML was built with it."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        _refuse_repeated_keys(node)
        return super().construct_mapping(node, deep=deep)

    def construct_lined_map(self, node: yaml.MappingNode) -> Iterator[LinedDict]:
        data = empty_lined(node)
        yield data
        data.update(self.construct_mapping(node))


_FastSpecYamlLoader.add_constructor(_MAP_TAG, _FastSpecYamlLoader.construct_lined_map)


def parse_yaml(text: str) -> Any:
    """The document of `text` (safe: no Python objects). A file libyaml refuses is parsed
    again by PyYAML's parser, so the error names the line and quotes it as it always did."""
    try:
        return yaml.load(text, Loader=_FastSpecYamlLoader)
    except yaml.YAMLError:
        return yaml.load(text, Loader=_SpecYamlLoader)


@dataclass
class _Declared:
    """What spec files declare: one file's, or all of them together."""

    pipelines: list[PipelineSpec] = field(default_factory=list)
    connections: dict[str, ConnectionSpec] = field(default_factory=dict)
    groups: dict[str, GroupSpec] = field(default_factory=dict)
    wildcards: list[WildcardEntry] = field(default_factory=list)


def discover_files(path: Path) -> list[Path]:
    """`path` itself when it is a file, else every *.yaml and *.yml below it, sorted."""
    if path.is_file():
        return [path]
    if path.is_dir():
        found = [*path.rglob("*.yaml"), *path.rglob("*.yml")]
        return sorted(p for p in found if p.is_file())
    raise SpecError(
        [
            SpecProblem(
                path,
                None,
                None,
                "does not exist; set PGFLOW_CONFIG to a spec file or a folder of *.yaml specs",
            )
        ]
    )


def load_project(
    path: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    lister: TableLister | None = None,
    refresh: bool = False,
    inspector: QueryInspector | None = None,
) -> Project:
    """Load and validate every spec under `path` (default: $PGFLOW_CONFIG or ./pipelines).

    Schema-wide specs expand against the table cache next to them; `lister` lists a source
    schema the cache lacks (and every one with `refresh`), and the cache is rewritten.
    The tables source queries read come the same way from their cache, or from `inspector`.
    """
    environ = os.environ if environ is None else environ
    root = Path(path) if path is not None else config_path(environ)
    problems: list[SpecProblem] = []
    project = _Declared()
    for file in discover_files(root):
        found = _load_file(file, problems)
        project.pipelines.extend(found.pipelines)
        project.connections.update(found.connections)
        project.wildcards.extend(found.wildcards)
        problems.extend(merge_groups(project.groups, found.groups))
    listing = with_sessions(lister, project.connections) if lister is not None else None
    expansions = expand_wildcards(project.wildcards, listing, refresh)
    problems.extend(expansions.problems)
    pipelines = explicit_specs_win([*project.pipelines, *expansions.pipelines], expansions.notes)
    problems.extend(check_project(pipelines, project.connections, environ))
    problems.extend(check_groups(project.groups, pipelines))
    if problems:
        raise SpecError(problems)
    notes = list(expansions.notes)
    pipelines = with_query_tables(pipelines, project.connections, inspector, refresh, notes)
    return Project(
        tuple(with_group_publications(pipelines)),
        project.connections,
        project.groups,
        tuple(notes),
        tuple(expansions.wildcards),
        tuple(expansions.listings.values()),
    )


def _load_file(file: Path, problems: list[SpecProblem]) -> _Declared:
    document = _read_document(file, problems)
    if document is None:
        return _Declared()

    def report_file(field_path: str, message: str) -> None:
        problems.append(SpecProblem(file, None, field_path, message))

    top = Section(document, "", report_file)
    found = _Declared(connections=read_connections(top, file), groups=read_groups(top, file))
    for entry, prefix, line in _pipeline_entries(top, document, found):
        if is_wildcard(entry):
            assert isinstance(entry, Mapping)
            wildcard = read_wildcard(entry, prefix, file, problems, line)
            if wildcard is not None:
                found.wildcards.append(wildcard)
            continue
        pipeline = read_pipeline(entry, prefix, file, problems)
        if pipeline is not None:
            found.pipelines.append(replace(pipeline, line=line))
    return found


def _read_document(file: Path, problems: list[SpecProblem]) -> Mapping[str, Any] | None:
    """The file's YAML mapping; None when it is empty or not a mapping (reported)."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(SpecProblem(file, None, None, f"cannot be read as UTF-8 text: {exc}"))
        return None
    try:
        document = parse_yaml(text)
    except yaml.YAMLError as exc:
        problems.append(SpecProblem(file, None, None, f"is not valid YAML: {exc}"))
        return None
    if document is not None and not isinstance(document, Mapping):
        message = "must hold a mapping with `source` and `sink`, or `pipelines:`"
        problems.append(SpecProblem(file, None, None, message))
        return None
    return document


def _pipeline_entries(
    top: Section, document: Mapping[str, Any], found: _Declared
) -> list[tuple[object, str, int | None]]:
    """Each pipeline of the file with its field prefix (`pipelines[i]`, or "" for the one at
    top level: everything but `connections:` and `groups:`, which were read already) and the
    line it starts on."""
    if top.has("pipelines"):
        entries = top.raw("pipelines")
        if not isinstance(entries, list):
            top.problem("pipelines", "must be a list of pipelines, each with `source` and `sink`")
            entries = []
        top.finish()
        return [(entry, f"pipelines[{i}]", line_of(entry)) for i, entry in enumerate(entries)]
    if top.has("source") or top.has("sink"):
        keys = [k for k in document if k not in FILE_KEYS]
        return [({k: document[k] for k in keys}, "", first_key_line(document, keys))]
    if not found.connections and not found.groups:
        top.problem("source", "is required: a spec holds `source` and `sink`, or `pipelines:`")
    top.finish()
    return []
