"""The benchmark suite and its single-topic benches (bench/README.md); not shipped with pgflow.

They measure pgflow as a deployment runs it: jemalloc's page decay for polars and deltalake
(README "Memory") is set here, before any bench module imports them, for runs that do not go
through `make bench` (which exports it); a value set by the user wins. The benches are
programs, not a library: pgflow itself never changes the environment.
"""

import os

from pgflow_tests.makefile import JEMALLOC_SETTING, exported_default

os.environ.setdefault(JEMALLOC_SETTING, exported_default(JEMALLOC_SETTING))
