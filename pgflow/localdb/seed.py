"""Seed the demo "shop" schema (customers, orders, order_items, payments) into a database."""

from __future__ import annotations

from importlib import resources

import psycopg
from psycopg import sql

SHOP_TABLES = ("customers", "orders", "order_items", "payments")


def shop_sql() -> str:
    """The DDL and data-generation script (shipped as package data next to this module)."""
    return resources.files("pgflow.localdb").joinpath("shop.sql").read_text(encoding="utf-8")


def seed_shop(uri: str, customers: int = 1000) -> dict[str, int]:
    """(Re)create the shop demo in schema public of ``uri``; returns the row count per table.

    The data is generated in SQL and scales with ``customers`` (about 3 orders per customer,
    1-4 items per order, one payment per paid or shipped order). Everything runs in one
    transaction, so a failed seed leaves the previous demo data in place.
    """
    if customers < 0:
        raise ValueError(f"customers must be >= 0, got {customers}")
    with psycopg.connect(uri) as conn, conn.transaction():
        # The script reads its scale from a transaction-local setting: psycopg only runs
        # multi-statement scripts without bind parameters.
        conn.execute("SELECT set_config('pgflow.customers', %s, true)", [str(customers)])
        conn.execute(shop_sql().encode("utf-8"))
        return {table: _count(conn, table) for table in SHOP_TABLES}


def shop_seeded(uri: str) -> bool:
    """Whether ``uri`` already holds the shop demo's tables."""
    with psycopg.connect(uri) as conn:
        row = conn.execute("SELECT to_regclass('public.orders') IS NOT NULL").fetchone()
        return bool(row and row[0])


def _count(conn: psycopg.Connection, table: str) -> int:
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table))
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


# A little business since the last run, for the demo's CDC pipelines to stream: payments
# arrive, pending orders change, orders cancelled without a payment are deleted, new ones come.
ACTIVITY = (
    (
        "shipped",
        "UPDATE public.orders SET status = 'shipped', updated_at = now() WHERE id IN "
        "(SELECT id FROM public.orders WHERE status = 'paid' ORDER BY id LIMIT 50)",
    ),
    (
        "repriced",
        "UPDATE public.orders SET total = total + 1, updated_at = now() WHERE id IN "
        "(SELECT id FROM public.orders WHERE status = 'pending' ORDER BY id LIMIT 50)",
    ),
    (
        "deleted",
        "DELETE FROM public.orders WHERE id IN (SELECT o.id FROM public.orders o "
        "WHERE o.status = 'cancelled' AND NOT EXISTS "
        "(SELECT FROM public.payments p WHERE p.order_id = o.id) ORDER BY o.id LIMIT 20)",
    ),
    (
        "placed",
        "INSERT INTO public.orders (id, customer_id, status, total, currency, placed_at, "
        "updated_at) SELECT m.id + g, c.id, 'pending', 10 * g, 'EUR', now(), now() "
        "FROM (SELECT coalesce(max(id), 0) AS id FROM public.orders) m, "
        "(SELECT min(id) AS id FROM public.customers) c, generate_series(1, 30) g "
        "WHERE c.id IS NOT NULL",
    ),
)


def shop_activity(uri: str) -> dict[str, int]:
    """Change some orders of a seeded shop, in one transaction; the rows each change touched."""
    with psycopg.connect(uri) as conn, conn.transaction():
        return {name: conn.execute(statement).rowcount for name, statement in ACTIVITY}
