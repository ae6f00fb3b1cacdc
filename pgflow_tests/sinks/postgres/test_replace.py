"""replace on a real cluster: delete what custom_predicate selects, insert the staged rows.

The expected target is built in plain SQL from the previous target and the source snapshot
(`reference` of test_merge): the previous rows for which the predicate is not true, plus every
source row. Bad predicates must fail with a clear error and leave the target unchanged.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres import replace as replace_module
from pgflow.sinks.postgres.replace import InvalidPredicate, shape_problem
from pgflow_tests.sinks.postgres.conftest import execute, fetch, run_load
from pgflow_tests.sinks.postgres.test_merge import reference, staging_tables, target_text

ORDERS = TableName("public", "orders")
TARGET = TableName("landing", "orders")
FEBRUARY = "order_date >= '2024-02-01'"


def replace(predicate: str) -> StrategySpec:
    return StrategySpec(mode="replace", custom_predicate=predicate)


def replaced(predicate: str) -> str:
    """Reference: previous rows the predicate does not select (false or NULL), plus new rows."""
    escaped = predicate.replace("{", "{{").replace("}", "}}")  # reference() calls str.format
    return (
        f"SELECT {{cols}} FROM expect.prev WHERE (\n{escaped}\n) IS NOT TRUE"
        f" UNION ALL SELECT {{cols}} FROM expect.new"
    )


@pytest.fixture
def orders(source_uri: str) -> str:
    """January and February orders, one without a date; loaded once into the target."""
    execute(
        source_uri,
        """
        CREATE TABLE orders (id int PRIMARY KEY, order_date date, amount numeric(10,2), note text);
        INSERT INTO orders SELECT g, '2024-01-01'::date + g, g * 10, 'order ' || g
        FROM generate_series(1, 50) g;
        INSERT INTO orders VALUES (99, NULL, 1, 'undated');
    """,
    )
    return source_uri


@pytest.fixture
def loaded(orders: str, sink_uri: str) -> str:
    first = run_load(orders, sink_uri, ORDERS, TARGET, replace(FEBRUARY))
    assert first.created_target and first.rows == 51
    return sink_uri


def february_extract(source_uri: str) -> None:
    """The source now delivers February only: some rows changed, one gone, new ones."""
    execute(
        source_uri,
        "DELETE FROM orders WHERE order_date < '2024-02-01' OR order_date IS NULL;"
        "UPDATE orders SET amount = amount + 1, note = 'changed' WHERE id BETWEEN 32 AND 35;"
        "DELETE FROM orders WHERE id = 40;"
        "INSERT INTO orders SELECT g, '2024-02-10', g, 'new' FROM generate_series(51, 55) g",
    )


def test_deletes_the_predicates_rows_then_inserts_the_staged_rows(orders, loaded):
    sink = loaded
    february_extract(orders)
    expected = reference(orders, sink, ORDERS, TARGET, replaced(FEBRUARY))
    february_before = fetch(sink, f"SELECT count(*) FROM landing.orders WHERE {FEBRUARY}")[0][0]

    result = run_load(orders, sink, ORDERS, TARGET, replace(FEBRUARY))

    assert target_text(sink, TARGET) == expected
    assert result.rows == 24  # 20 February rows left in the source + 5 new - 1 deleted
    assert result.strategy_metadata["rows_deleted"] == february_before == 20
    # January and the undated row (predicate NULL) stay; id 40, gone from the source, is gone.
    assert fetch(sink, "SELECT count(*) FROM landing.orders WHERE order_date < '2024-02-01'") == [
        (30,)
    ]
    assert fetch(sink, "SELECT note FROM landing.orders WHERE id IN (40, 99) ORDER BY id") == [
        ("undated",)
    ]
    assert staging_tables(sink) == []


def test_predicate_with_quotes_comments_and_percent_signs(orders, loaded):
    # Parentheses and ';' inside literals, quoted identifiers and comments are not structure;
    # '%' and '{}' reach Postgres untouched; a trailing comment cannot eat the closing ')'.
    predicate = (
        "(\"note\" LIKE 'order 4%' OR note = 'x);{}' OR note = $q$(;$q$ OR note = E'it\\'s)')"
        " /* a (nested /* ; */ comment */ AND order_date >= '2024-02-01' -- only February )"
    )
    assert shape_problem(predicate) is None
    execute(
        orders, "DELETE FROM orders WHERE id NOT BETWEEN 40 AND 49; UPDATE orders SET note = 'b'"
    )
    expected = reference(orders, loaded, ORDERS, TARGET, replaced(predicate))

    result = run_load(orders, loaded, ORDERS, TARGET, replace(predicate))

    assert result.strategy_metadata["rows_deleted"] == 10  # ids 40-49 ('order 4%', in February)
    assert target_text(loaded, TARGET) == expected


@pytest.mark.parametrize(
    ("predicate", "postgres_says"),
    [
        pytest.param("no_such_col > 1", 'column "no_such_col" does not exist', id="unknown-column"),
        pytest.param("amount + 1", "argument of WHERE must be type boolean", id="not-boolean"),
        pytest.param("order_date >=", "syntax error at or near", id="syntax-error"),
        pytest.param("count(*) > 1", "aggregate functions are not allowed", id="aggregate"),
    ],
)
def test_invalid_predicate_is_a_clear_error_and_nothing_changes(
    orders, loaded, predicate, postgres_says
):
    before = target_text(loaded, TARGET)
    execute(orders, "UPDATE orders SET note = 'changed'")

    with pytest.raises(InvalidPredicate) as invalid:
        run_load(orders, loaded, ORDERS, TARGET, replace(predicate))

    message = str(invalid.value)
    assert message.startswith(f"sink.strategy.custom_predicate {predicate!r} is not a valid")
    assert postgres_says in message and "Nothing was deleted" in message
    assert "id, order_date, amount, note" in message  # the columns it may use
    assert target_text(loaded, TARGET) == before
    assert staging_tables(loaded) == []


def test_predicate_failing_on_the_data_is_a_clear_error_and_nothing_changes(orders, loaded):
    before = target_text(loaded, TARGET)  # notes are 'order <n>': not integers

    with pytest.raises(InvalidPredicate) as invalid:
        run_load(orders, loaded, ORDERS, TARGET, replace("note::int > 5"))

    message = str(invalid.value)
    assert "'note::int > 5' failed on the rows of landing.orders" in message
    assert 'invalid input syntax for type integer: "order' in message
    assert "Nothing was deleted" in message
    assert target_text(loaded, TARGET) == before


@pytest.mark.parametrize(
    ("predicate", "problem"),
    [
        pytest.param("true; DROP TABLE landing.keep", "contains ';'", id="second-statement"),
        pytest.param("1=1) OR (true", "closes a parenthesis it did not open", id="closes-early"),
        pytest.param(
            "false) RETURNING (SELECT 1", "closes a parenthesis it did not open", id="escape"
        ),
        pytest.param("(id > 1", "opens 1 parenthesis it does not close", id="unclosed"),
        pytest.param("note = 'x", "has a string literal that is never closed", id="open-string"),
        pytest.param("true /* (", "has a /* comment that is never closed", id="open-comment"),
        pytest.param("  -- nothing", "is empty", id="only-a-comment"),
    ],
)
def test_predicate_that_is_not_one_condition_is_refused(orders, loaded, predicate, problem):
    execute(loaded, "CREATE TABLE landing.keep (n int); INSERT INTO landing.keep VALUES (1)")
    before = target_text(loaded, TARGET)
    execute(orders, "UPDATE orders SET note = 'changed'")

    with pytest.raises(InvalidPredicate) as invalid:
        run_load(orders, loaded, ORDERS, TARGET, replace(predicate))

    message = str(invalid.value)
    assert message.startswith(f"sink.strategy.custom_predicate {predicate!r} {problem}")
    assert "Nothing was deleted" in message
    assert target_text(loaded, TARGET) == before
    assert fetch(loaded, "SELECT n FROM landing.keep") == [(1,)]


def test_postgres_refuses_a_second_statement_even_past_the_scanner(loaded):
    """The second guard on its own: statements run through the extended query protocol."""
    execute(loaded, "CREATE TABLE landing.keep (n int)")
    with (
        psycopg.connect(loaded) as conn,
        pytest.raises(psycopg.errors.SyntaxError, match="cannot insert multiple commands"),
    ):
        replace_module._execute_one(conn, sql.SQL("SELECT 1; DROP TABLE landing.keep"))
    assert fetch(loaded, "SELECT count(*) FROM landing.keep") == [(0,)]


@pytest.mark.parametrize(
    "text",
    [
        "a = 'it''s ) ;'",
        'x."we)ird;" > 1',
        "y = $$ ) ; $$ AND z = $t$ $$ ) $t$",
        "a$b$ > 1",  # `$` inside an identifier starts no dollar quote
        "n = E'\\' ) ;' -- )",
        "f(a, (b)) /* ( /* ) */ ; */ > 1",
        "t.v = U&'d\\0061t' AND b = B'10'",
    ],
)
def test_scanner_accepts_literals_quotes_and_comments(text):
    assert shape_problem(text) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a = ''' ) OR (true", "never closed"),
        ("a = $$ ) OR (true", "never closed"),
        ('"a) OR (true', "never closed"),
        ("a = 'x\\' ) OR (true --'", "closes a parenthesis"),  # standard strings: \ is text
        ("1e'x' > 1", "glues a number"),  # PG versions lex this differently: refuse
        ("a = 1e--(\n) OR (true = 1e--)\n", "glues a number"),  # `--` may start a comment
        ("a = 1e-5 AND \u00a0e'\\' ) OR (true --'", "closes a parenthesis"),  # U+00A0 is no space
        ("$1 = 1 ;", "contains ';'"),
    ],
)
def test_scanner_refuses_what_escapes_or_is_ambiguous(text, problem):
    found = shape_problem(text)
    assert found is not None and problem in found


def test_scanner_follows_standard_conforming_strings_off():
    # With it off, a backslash escapes the quote in a plain string, as Postgres lexes it then.
    text = "a = 'x\\' ) OR (true' AND b = B'1\\' > 1"
    assert shape_problem(text, standard_conforming_strings=False) is None
    assert shape_problem(text) is not None


def test_failure_mid_apply_leaves_the_target_as_before(orders, loaded):
    execute(loaded, "ALTER TABLE landing.orders ADD CONSTRAINT small CHECK (amount < 1000)")
    before = target_text(loaded, TARGET)
    # The DELETE has run when the staged row 55 violates the target's CHECK.
    february_extract(orders)
    execute(orders, "UPDATE orders SET amount = 5000 WHERE id = 55")

    with pytest.raises(psycopg.errors.CheckViolation):
        run_load(orders, loaded, ORDERS, TARGET, replace(FEBRUARY))

    assert target_text(loaded, TARGET) == before
    assert staging_tables(loaded) == []
