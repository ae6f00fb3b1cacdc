"""LSN text <-> int conversion (pgflow.sources.pgoutput), checked against the server."""

from __future__ import annotations

import pytest

from pgflow.sources.pgoutput import lsn_to_int, lsn_to_text
from pgflow_tests.pg import fetch


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0/0", 0),
        ("16/B374D848", 0x16B374D848),
        ("0/FFFFFFFF", 2**32 - 1),
        ("1/0", 2**32),
        ("FFFFFFFF/FFFFFFFF", 2**64 - 1),
    ],
)
def test_lsn_text_round_trips(text: str, value: int) -> None:
    assert lsn_to_int(text) == value
    assert lsn_to_text(value) == text
    assert lsn_to_int(text.lower()) == value


@pytest.mark.parametrize("text", ["", "16", "16/", "/1", "1/2/3", "G/0", "123456789/0", "-1/0"])
def test_a_malformed_lsn_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not an LSN"):
        lsn_to_int(text)


@pytest.mark.parametrize("value", [-1, 2**64])
def test_an_lsn_out_of_range_is_rejected(value: int) -> None:
    with pytest.raises(ValueError, match="64-bit"):
        lsn_to_text(value)


def test_lsns_match_what_the_server_prints(fresh_db: str) -> None:
    values = [0, 1, 2**32 - 1, 2**32, 0x16B374D848, 2**63 + 12345, 2**64 - 1]
    for value in values:
        (printed, back), *_ = fetch(
            fresh_db,
            "SELECT ('0/0'::pg_lsn + %s::numeric)::text, (%s::pg_lsn - '0/0'::pg_lsn)::text",
            (str(value), lsn_to_text(value)),
        )
        assert (printed, int(back)) == (lsn_to_text(value), value)
        assert lsn_to_int(printed) == value
