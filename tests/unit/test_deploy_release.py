"""The bad-deployment drill's pure parts: the app log's error rate, the schema diff, the
reference app's releases and its migrations (no containers)."""

import sys
from pathlib import Path
from types import ModuleType

import pytest
from image_modules import load_image_module

from drillkit.catalog.deploy import error_rate, route_of, schema_diff
from drillkit.core.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "images" / "app"


def _load(name: str, path: Path) -> ModuleType:
    return load_image_module(name, path)


def _load_migrate() -> tuple[ModuleType, ModuleType]:
    """app.py and migrate.py, which imports it as `app` (it puts its own folder on sys.path):
    the name and the path are put back once migrate.py is loaded."""
    reference = _load("app", APP_DIR / "app.py")
    saved, path = sys.modules.get("app"), list(sys.path)
    sys.modules["app"] = reference
    try:
        return reference, _load("drillkit_reference_migrate", APP_DIR / "migrate.py")
    finally:
        sys.path[:] = path
        if saved is None:
            sys.modules.pop("app", None)
        else:
            sys.modules["app"] = saved


app, migrate = _load_migrate()

LOG = "\n".join(
    [
        '2026-12-02T02:47:01.000000Z request method="GET" path="/api/health" status=200'
        " duration_ms=1.5",
        '2026-12-02T02:47:02.100000Z db_error error_class="UndefinedTable" sqlstate="42P01"'
        ' message="relation \\"order_events\\" does not exist"',
        '2026-12-02T02:47:02.100000Z request method="POST" path="/api/orders" status=503'
        " duration_ms=4.0",
        '2026-12-02T02:47:02.200000Z request method="GET" path="/api/orders/17" status=200'
        " duration_ms=2.0",
        '2026-12-02T02:47:02.300000Z request method="POST" path="/api/orders" status=201'
        " duration_ms=3.0",
        "2026-12-02T02:47:02.400000Z started address=0.0.0.0:8080",
    ]
)


def test_error_rate_counts_requests_routes_and_database_errors() -> None:
    rate = error_rate(LOG)
    assert (rate.requests, rate.errors) == (4, 1)
    assert rate.rate == pytest.approx(0.25)
    assert rate.by_route[0] == ("POST /api/orders", 2, 1)
    assert ("GET /api/orders/{id}", 1, 0) in rate.by_route
    assert rate.db_errors == (('42P01 relation "order_events" does not exist', 1),)
    assert "1 of 4 requests answered 5xx (25.0%)" in rate.summary()
    assert "POST /api/orders 1/2" in rate.summary()


def test_error_rate_after_a_time_judges_when_each_request_began() -> None:
    cut = 1796179622.0  # 2026-12-02T02:47:02Z
    rate = error_rate(LOG, began_after=cut)
    # the health check began before the cut; the rest after it
    assert (rate.requests, rate.errors) == (3, 1)
    assert error_rate(LOG, began_after=cut + 3600).requests == 0
    assert error_rate("").rate == 0.0


def test_route_folds_ids() -> None:
    assert route_of("GET", "/api/admin/users/12/security") == "GET /api/admin/users/{id}/security"
    assert route_of("POST", "/api/orders") == "POST /api/orders"


def test_schema_diff_names_added_removed_and_changed_objects() -> None:
    before = [
        ("column", "orders.item", "text NOT NULL"),
        ("index", "orders_created_at", "CREATE INDEX orders_created_at ..."),
    ]
    after = [
        ("column", "orders.item", "text"),
        ("column", "orders.status", "text NOT NULL DEFAULT 'placed'::text"),
    ]
    assert schema_diff(before, after) == [
        "~ column orders.item: text NOT NULL -> text",
        "+ column orders.status: text NOT NULL DEFAULT 'placed'::text",
        "- index orders_created_at: CREATE INDEX orders_created_at ...",
    ]
    assert schema_diff(before, list(before)) == []


def test_release_parsing_and_what_each_release_expects() -> None:
    one, two = app.parse_release(None), app.parse_release("2.0.0")
    assert (one.version, one.schema, one.records_order_events) == ("1.0.0", "0001", False)
    assert (two.version, two.schema, two.records_order_events) == ("2.0.0", "0002", True)
    assert app.release_info(two) == {"version": "2.0.0", "schema": "0002"}
    with pytest.raises(ValueError, match=r"MAJOR\.MINOR\.PATCH"):
        app.parse_release("latest")
    with pytest.raises(ValueError, match="no release 7"):
        app.parse_release("7.0.0")


def test_each_build_carries_only_its_own_migrations() -> None:
    assert migrate.available("0001") == ()
    assert [m.version for m in migrate.available("0002")] == ["0002"]
    assert migrate.pending({"0001"}, "0002") == migrate.available("0002")
    assert migrate.pending({"0001", "0002"}, "0002") == ()


def test_migration_0002_fails_after_its_first_statements_and_undoes_a_partial_apply() -> None:
    (m,) = migrate.MIGRATIONS
    assert len(m.up) == 3 and "order_statuses" in m.up[-1]  # the statement that fails
    assert any("CONCURRENTLY" in sql for sql in m.up)  # why it runs outside a transaction
    assert all("IF EXISTS" in sql for sql in m.down)  # safe on a half-applied migration


def test_migrate_usage_errors_exit_2() -> None:
    assert migrate.main([]) == 2
    assert migrate.main(["down"]) == 2
    assert migrate.main(["sideways"]) == 2


def test_the_twin_differs_by_the_schema_rollback_only() -> None:
    good = load_scenario(ROOT / "scenarios" / "bad-deployment.yaml")
    twin = load_scenario(ROOT / "scenarios" / "sabotage" / "bad-deployment-schema-forgotten.yaml")
    assert [
        s.action for s in good.recovery if s.action not in [t.action for t in twin.recovery]
    ] == ["migrate-down"]
    assert "schema-unchanged" in [c.id for c in twin.checklist]
    assert twin.expect == {"outcome": "fail", "breach": "checklist"}


def test_error_rate_parameters_are_bounded_at_load(tmp_path: Path) -> None:
    from drillkit.errors import ValidationError

    text = (ROOT / "scenarios" / "bad-deployment.yaml").read_text()
    bad = text.replace(
        "action: check-deploy-errors", "action: check-deploy-errors\n    with: {min_rate: 5}"
    )
    path = tmp_path / "bad-deployment.yaml"
    path.write_text(bad)
    with pytest.raises(ValidationError, match="min_rate"):
        load_scenario(path)
