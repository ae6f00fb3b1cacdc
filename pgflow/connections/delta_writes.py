"""Which storage options a writer of a Delta table uses: S3 commits kept safe (no dagster here,
so sinks and flows may import it)."""

from __future__ import annotations

import os
from collections.abc import Mapping

PREFIX = "PGFLOW_DELTA_"


class UnsafeDeltaStorage(ValueError):
    """The storage options ask for a commit mechanism that does not stop a second writer."""


# Object stores whose commits delta-rs makes through the S3 protocol.
S3_SCHEMES = ("s3://", "s3a://")
# delta-rs 1.x commits a version with a conditional PUT (If-None-Match: *): of two writers of
# one version exactly one wins. It is object_store's `conditional_put`, pinned here so that a
# changed library default cannot turn it off unnoticed.
CONDITIONAL_PUT = "aws_conditional_put"
SAFE_CONDITIONAL_PUT = "etag"
LOCKING_PROVIDER = "aws_s3_locking_provider"


def _option(options: Mapping[str, str], key: str) -> str | None:
    """An option as delta-rs sees it: keys in any case, else the AWS_* environment variable."""
    for name, value in options.items():
        if name.lower() in (key, key.removeprefix("aws_")):
            return value
    return os.environ.get(key.upper())


def write_storage_options(path: str, options: Mapping[str, str] | None) -> dict[str, str] | None:
    """The options a writer of the Delta table at `path` uses: S3 commits made safe.

    An s3:// table is committed with S3 conditional writes, which AWS S3 and most
    S3-compatible stores (MinIO, Cloudflare R2, ...) support and which need nothing extra.
    The settings that would give up that guarantee are refused, naming the option to change.
    """
    if not path.lower().startswith(S3_SCHEMES):
        return dict(options) if options else None
    options = dict(options or {})
    provider = _option(options, LOCKING_PROVIDER)
    if provider:
        raise UnsafeDeltaStorage(
            f"the Delta table at {path}: {LOCKING_PROVIDER.upper()}={provider} is set, but "
            "deltalake 1.x has no locking providers (it ignores it, so writers that rely on "
            "that lock would not be coordinated with pgflow). pgflow commits with S3 "
            f"conditional writes; unset {PREFIX}{LOCKING_PROVIDER.upper()} (and "
            f"{LOCKING_PROVIDER.upper()})"
        )
    put = _option(options, CONDITIONAL_PUT)
    if put is None:
        options[CONDITIONAL_PUT] = SAFE_CONDITIONAL_PUT
    elif put.strip().lower() != SAFE_CONDITIONAL_PUT:
        raise UnsafeDeltaStorage(
            f"the Delta table at {path}: {CONDITIONAL_PUT}={put} lets two runs commit the same "
            "version (S3 has no atomic rename). pgflow commits with S3 conditional writes: "
            f"unset {PREFIX}{CONDITIONAL_PUT.upper()} or set it to {SAFE_CONDITIONAL_PUT}"
        )
    return options
