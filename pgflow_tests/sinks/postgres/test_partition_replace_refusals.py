"""partition_replace on a real cluster: refusals and failures leave the target as it was."""

from __future__ import annotations

import datetime

import psycopg
import pytest

from pgflow.sinks.partition_slice import PartitionSlice
from pgflow.sinks.postgres.partition_replace import (
    NativePartitionRefused,
    PartitionMissing,
    PartitionSliceError,
)
from pgflow_tests.sinks.postgres.conftest import execute, table_text
from pgflow_tests.sinks.postgres.partition_replace_support import (
    FEBRUARY,
    FEBRUARY_TO_APRIL,
    NEW_FEBRUARY,
    NEW_TWO_DAYS,
    ORDER,
    PARTITIONED_TARGET,
    PLAIN_TARGET,
    assert_target_is_expected,
    expect,
    leftovers,
    load,
    make_source,
    make_target,
    partition_oids,
    staged_dates,
    strategy,
    swapped,
)


def test_required_refuses_a_plain_target_before_any_change(source_uri, sink_uri):
    make_source(source_uri, NEW_FEBRUARY)
    make_target(sink_uri, PLAIN_TARGET)
    before = table_text(sink_uri, "landing.sales", ORDER)

    with pytest.raises(NativePartitionRefused) as refused:
        load(source_uri, sink_uri, strategy("required"))

    message = str(refused.value)
    assert "landing.sales is not a partitioned table" in message
    assert "PARTITION BY RANGE (business_date)" in message and "native_mode: auto" in message
    assert table_text(sink_uri, "landing.sales", ORDER) == before


@pytest.mark.parametrize(
    ("native_mode", "window"),
    [("required", None), ("auto", None), ("disabled", None), ("auto", "may-july")],
)
def test_staged_values_without_a_partition_fail_before_any_change(
    source_uri, sink_uri, native_mode, window
):
    rows = (
        NEW_FEBRUARY
        + " UNION ALL SELECT 9000 + g, '2024-05-01'::date + g, 'new', 1, 1"
        + " FROM generate_series(0, 6) g"
    )
    partition_slice = None
    if window is None:
        rows += " UNION ALL SELECT 8999, NULL, 'new', 1, 1"
        shown = "NULL, '2024-05-01', '2024-05-02', '2024-05-03', '2024-05-04' and 3 more"
    else:
        rows = rows.replace(NEW_FEBRUARY + " UNION ALL", "")
        partition_slice = PartitionSlice(datetime.date(2024, 5, 1), datetime.date(2024, 8, 1))
        shown = "'2024-05-01', '2024-05-02', '2024-05-03', '2024-05-04', '2024-05-05' and 2 more"
    make_source(source_uri, rows)
    make_target(sink_uri)
    before = table_text(sink_uri, "landing.sales", ORDER)

    with pytest.raises(PartitionMissing) as error:
        load(source_uri, sink_uri, strategy(native_mode), partition_slice)

    assert str(error.value) == (
        f"the source has rows whose business_date has no partition in landing.sales: {shown};"
        " nothing was written. The partition must exist before the load: create it"
        " (CREATE TABLE ... PARTITION OF landing.sales FOR VALUES ...), or filter those rows"
        " out of the source"
    )
    assert table_text(sink_uri, "landing.sales", ORDER) == before


def test_a_value_without_a_sub_partition_fails_before_any_change(source_uri, sink_uri):
    # February is sub-partitioned and only its first half has a leaf: Feb 20 fits February
    # but no table can hold it.
    rows = NEW_TWO_DAYS + " UNION ALL SELECT 9000, '2024-02-20', 'new', 1, 1"
    make_source(source_uri, rows)
    execute(
        sink_uri,
        PARTITIONED_TARGET.replace(
            "CREATE TABLE landing.sales_2024_02 PARTITION OF landing.sales\n"
            "  FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');",
            "CREATE TABLE landing.sales_2024_02 PARTITION OF landing.sales\n"
            "  FOR VALUES FROM ('2024-02-01') TO ('2024-03-01') PARTITION BY RANGE (business_date);"
            ' CREATE TABLE landing."Feb 1st half" PARTITION OF landing.sales_2024_02'
            " FOR VALUES FROM ('2024-02-01') TO ('2024-02-16');",
        ),
    )
    execute(sink_uri, "INSERT INTO landing.sales VALUES (1, '2024-02-03', 'old', 1, 1)")
    before = table_text(sink_uri, "landing.sales", ORDER)

    with pytest.raises(PartitionMissing) as error:
        load(source_uri, sink_uri, strategy())

    assert str(error.value).startswith(
        "the source has rows whose business_date has no partition in landing.sales:"
        " '2024-02-20'; nothing was written."
    )
    assert table_text(sink_uri, "landing.sales", ORDER) == before


def test_required_refuses_a_slice_that_cuts_a_partition(source_uri, sink_uri):
    make_source(source_uri, NEW_TWO_DAYS)
    make_target(sink_uri)
    half = PartitionSlice(datetime.date(2024, 2, 1), datetime.date(2024, 2, 15))
    with pytest.raises(NativePartitionRefused, match=r"sales_2024_02 .* extends beyond the slice"):
        load(source_uri, sink_uri, strategy("required"), half)


SUB_PARTITIONED_FEBRUARY = """
ALTER TABLE landing.sales DETACH PARTITION landing.sales_2024_02;
CREATE TABLE landing.feb (LIKE landing.sales INCLUDING ALL) PARTITION BY RANGE (business_date);
CREATE TABLE landing.feb_all PARTITION OF landing.feb
  FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO landing.feb SELECT * FROM landing.sales_2024_02;
DROP TABLE landing.sales_2024_02;
ALTER TABLE landing.feb RENAME TO sales_2024_02;
ALTER TABLE landing.sales ATTACH PARTITION landing.sales_2024_02
  FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
"""


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (
            "CREATE TABLE landing.sales_other PARTITION OF landing.sales DEFAULT",
            "landing.sales has a default partition landing.sales_other",
        ),
        (
            SUB_PARTITIONED_FEBRUARY,
            "partition landing.sales_2024_02 is itself partitioned (sub-partitioning)",
        ),
        (
            "CREATE VIEW landing.feb AS SELECT * FROM landing.sales_2024_02",
            "partition landing.sales_2024_02 cannot be swapped without breaking what uses it:"
            " view landing.feb depends on it",
        ),
        (
            "CREATE TABLE landing.refunds (d date, id int);"
            " ALTER TABLE landing.refunds ADD FOREIGN KEY (d, id) REFERENCES landing.sales",
            "foreign key refunds_d_id_fkey on landing.refunds references it",
        ),
    ],
    ids=["default-partition", "sub-partitioned", "dependent-view", "inbound-foreign-key"],
)
def test_required_refuses_what_a_swap_cannot_handle_and_auto_falls_back(
    source_uri, sink_uri, setup, reason
):
    make_source(source_uri, NEW_FEBRUARY)
    make_target(sink_uri)
    execute(sink_uri, setup)
    before = table_text(sink_uri, "landing.sales", ORDER)

    with pytest.raises(NativePartitionRefused) as refused:
        load(source_uri, sink_uri, strategy("required"))

    assert reason in str(refused.value)
    assert table_text(sink_uri, "landing.sales", ORDER) == before
    # auto deletes/inserts instead, says why, and gives the same rows a swap would have.
    expect(sink_uri, staged_dates(NEW_FEBRUARY), NEW_FEBRUARY)
    result = load(source_uri, sink_uri, strategy())
    assert_target_is_expected(sink_uri)
    assert swapped(result) == []
    assert any(reason in s for s in result.statements if s.startswith("/*"))


def test_rows_outside_the_slice_fail_before_any_change(source_uri, sink_uri):
    rows = NEW_TWO_DAYS + " UNION ALL SELECT 9000, '2024-01-31', 'new', 1, 1"
    make_source(source_uri, rows)
    make_target(sink_uri)
    before = table_text(sink_uri, "landing.sales", ORDER)

    with pytest.raises(PartitionSliceError) as error:
        load(source_uri, sink_uri, strategy(), FEBRUARY)

    assert "e.g. business_date = 2024-01-31" in str(error.value)
    assert "nothing was written" in str(error.value)
    assert table_text(sink_uri, "landing.sales", ORDER) == before


def test_a_failure_between_swaps_leaves_the_target_as_before(source_uri, sink_uri):
    # March's new partition breaks the parent's foreign key: its ATTACH fails after February
    # has already been detached, swapped in and dropped.
    rows = NEW_TWO_DAYS + " UNION ALL SELECT 9000, '2024-03-03', 'new', 99, 1"
    make_source(source_uri, rows)
    make_target(sink_uri)
    execute(
        sink_uri, "ALTER TABLE landing.sales ADD FOREIGN KEY (store_id) REFERENCES landing.stores"
    )
    before = table_text(sink_uri, "landing.sales", ORDER)
    oids = partition_oids(sink_uri)

    with pytest.raises(psycopg.errors.ForeignKeyViolation) as error:
        load(source_uri, sink_uri, strategy(), FEBRUARY_TO_APRIL)

    assert 'table "sales_2024_03__pgflow_new_' in str(error.value)
    assert table_text(sink_uri, "landing.sales", ORDER) == before
    assert partition_oids(sink_uri) == oids
    assert leftovers(sink_uri) == []
