"""Malformed and hostile pipeline specs: the table of cases.

One table of cases (`CASES`) for the reliability view of spec errors: each is a spec (a
mutation of one valid pipeline, or raw YAML text), the field its error must name, a piece of
the message (the problem or its fix), and where it is caught: when the code location loads
(`load`, specs_cases_load.py), or only once a run resolves connections and asks Postgres
(`run`, specs_cases_run.py; materialized in-process or, for `cli` cases, with the real
`dagster asset materialize`). A case and the spec it mutates: specs_model.py; what "nothing
was written" means: specs_snapshot.py.
"""

from __future__ import annotations

from pgflow_tests.reliability.specs_cases_load import LOAD_CASES
from pgflow_tests.reliability.specs_cases_run import RUN_CASES
from pgflow_tests.reliability.specs_model import Case

CASES: tuple[Case, ...] = (*LOAD_CASES, *RUN_CASES)
