"""Code references from each asset to the spec lines that made it, linked to the repository
when the specs live in a GitHub or GitLab checkout.

The link is found once per code-location load: $PGFLOW_GIT_URL (and $PGFLOW_GIT_BRANCH) when
set, e.g. in an image without the repository's `.git`; else from the checkout holding the spec
folder, by reading its `.git` files (the origin remote in `config`, the branch in `HEAD`): no
`git` process, since every run's process loads the code location. No remote, no checkout, or
another host: the references stay local file paths.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import dagster as dg

from pgflow.config.model import PipelineSpec, Project

GIT_URL_ENV = "PGFLOW_GIT_URL"
GIT_BRANCH_ENV = "PGFLOW_GIT_BRANCH"
# git@github.com:org/repo.git and ssh://git@gitlab.example.com:2222/org/repo.git
_SCP_LIKE = re.compile(r"^[\w.-]+@(?P<host>[\w.-]+):(?P<path>[^/].*)$")
_URL = re.compile(
    r"^(?P<scheme>https?|ssh|git)://(?:[^@/]+@)?(?P<host>[\w.-]+)(?::\d+)?/(?P<path>.+)$"
)

Definition = dg.AssetsDefinition | dg.AssetSpec


def _quiet_beta() -> None:
    """Dagster flags its code-reference API as beta on every use (once per asset); it is the
    documented way to link an asset to its source, so the warning is noise in every load.
    Set where used: a caller (pytest, Dagster's CLI) may have reset the filters since import."""
    warnings.filterwarnings(
        "ignore",
        message=r".*(CodeReference|CodeReferencesMetadataValue|AnchorBasedFilePathMapping|"
        r"link_code_references_to_git).*beta",
        category=dg.BetaWarning,
    )


@dataclass(frozen=True)
class GitLink:
    """Where the spec files are in a hosted repository."""

    url: str  # https://<host>/<org>/<repo>, no credentials
    branch: str  # a branch name, or a commit when the checkout is detached
    root: Path  # the local folder that is the repository's root


def code_references(pipeline: PipelineSpec) -> dg.CodeReferencesMetadataValue:
    """The spec file and the line the pipeline (or its `tables:` entry) starts on."""
    _quiet_beta()
    reference = dg.LocalFileCodeReference(
        file_path=_absolute(pipeline.file),
        line_number=pipeline.line,
        label="pgflow spec",
    )
    return dg.CodeReferencesMetadataValue(code_references=[reference])


@functools.lru_cache(maxsize=1024)
def _absolute(file: Path) -> str:
    """Resolved once per spec file (a file of 1,000 pipelines: one resolve, not 1,000)."""
    return str(Path(file).resolve())


def https_url(remote: str) -> str | None:
    """A GitHub or GitLab remote as the https address Dagster links to; None for another
    host or a local path. Credentials in the remote are dropped (they never reach the UI)."""
    found = _SCP_LIKE.match(remote) or _URL.match(remote)
    if found is None:
        return None
    host, path = found["host"], found["path"].rstrip("/")
    if "github" not in host and "gitlab" not in host:
        return None
    return f"https://{host}/{path.removesuffix('.git')}"


def git_link(project: Project, environ: Mapping[str, str] | None = None) -> GitLink | None:
    """The repository the project's spec files are in, when it has a GitHub/GitLab remote."""
    environ = os.environ if environ is None else environ
    if not project.pipelines:
        return None
    folder = Path(project.pipelines[0].file).resolve().parent
    checkout = _checkout(folder)
    configured = environ.get(GIT_URL_ENV)
    remote = configured or (checkout.origin_url() if checkout else None)
    url = https_url(remote) if remote else None
    if url is None:
        return None
    branch = environ.get(GIT_BRANCH_ENV) or (checkout.branch() if checkout else None) or "main"
    # Without a checkout (an image given PGFLOW_GIT_URL) the working directory is the root.
    return GitLink(url, branch, checkout.root if checkout else Path.cwd())


def linked_to_git(definitions: Sequence[Definition], link: GitLink) -> list[Definition]:
    """`definitions` with their local spec references turned into links to the repository
    (external source specs have none and stay as they are)."""
    _quiet_beta()
    linked = dg.link_code_references_to_git(
        definitions,
        git_url=link.url,
        git_branch=link.branch,
        # A folder as the anchor: each spec's path under it is its path in the repository.
        file_path_mapping=dg.AnchorBasedFilePathMapping(
            local_file_anchor=link.root, file_anchor_path_in_repository="."
        ),
    )
    return cast(list[Definition], list(linked))


@dataclass(frozen=True)
class _Checkout:
    """A git working tree, read from its files."""

    root: Path  # the folder holding `.git`
    git_dir: Path  # its `.git` folder (a linked worktree's own one)
    common_dir: Path  # where `config` is (the main `.git` for a linked worktree)

    def origin_url(self) -> str | None:
        """`remote.origin.url` of the repository's config."""
        try:
            text = (self.common_dir / "config").read_text(encoding="utf-8")
        except OSError:
            return None
        section = None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line
            elif section == '[remote "origin"]' and re.match(r"url\s*=", line):
                return line.split("=", 1)[1].strip()
        return None

    def branch(self) -> str | None:
        """The checked-out branch, or the commit of a detached HEAD."""
        try:
            head = (self.git_dir / "HEAD").read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return head.removeprefix("ref: refs/heads/") or None


def _checkout(folder: Path) -> _Checkout | None:
    """The working tree `folder` is in: the nearest `.git` above it, a folder or (a linked
    worktree, a submodule) a file naming one."""
    for root in (folder, *folder.parents):
        dot_git = root / ".git"
        if dot_git.is_dir():
            return _Checkout(root, dot_git, dot_git)
        if dot_git.is_file():
            text = dot_git.read_text(encoding="utf-8").strip()
            if not text.startswith("gitdir:"):
                return None
            git_dir = (root / text.removeprefix("gitdir:").strip()).resolve()
            common = git_dir / "commondir"
            shared = (
                (git_dir / common.read_text().strip()).resolve() if common.is_file() else git_dir
            )
            return _Checkout(root, git_dir, shared)
    return None
