"""The OIDs of the built-in Postgres types pgflow names in code: fixed by Postgres, the same on
every server. No polars here, so the CDC path can use them without loading it."""

BOOL = 16
BYTEA = 17
NUMERIC = 1700
DATE = 1082
TIMESTAMP = 1114
TIMESTAMPTZ = 1184
