"""The payment providers, live (stack option payments: true): loopback-only labelled ports, the
app's payment path against real stub providers (capture, idempotent retry, signed webhooks), its
degradation under a hung provider (pending within its timeout, the order kept), a capture that
only the webhook reports, and the runbook's verify / switch / process / reconcile."""

import dataclasses
import secrets
from typing import Any

import pytest
import requests

from drillkit.catalog.payments import PaymentProbe, app_payments
from drillkit.core.probes import ProbeError
from drillkit.stack import engine
from drillkit.stack.reaping import leftovers
from drillkit.stack.seed import seed
from drillkit.stack.services.payments import (
    PROVIDERS,
    control_headers,
    fetch_charges,
    reconcile,
    set_fault,
)
from drillkit.stack.spec import load_stack
from drillkit.stack.stack import Stack, StackOptions
from drillkit.wait import wait_for


class Ctx:
    """What the payment helpers use of a DrillContext."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.primary = "primary"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    run_id = "it" + secrets.token_hex(3)
    spec = load_stack()
    spec = dataclasses.replace(spec, database=dataclasses.replace(spec.database, replica=False))
    s = Stack(
        spec,
        run_id,
        tmp_path_factory.mktemp("run") / run_id,
        StackOptions(optional=frozenset({"payments"})),
    )
    try:
        s.up()
        with s.connect("primary") as conn:
            seed(conn, s.secrets["user_password"], "small")
        yield s
    finally:
        s.down()
        assert leftovers(run_id) == [], "teardown left resources behind"


@pytest.fixture
def healthy(stack):
    """Every provider healthy and the app charging at the primary provider."""
    for p in PROVIDERS:
        requests.delete(
            stack.provider_url(p) + "/_drill/fault",
            headers=control_headers(stack.secrets["payments_control_token"]),
            timeout=5,
        )
    stack.set_payment_provider(PROVIDERS[0])
    stack.reload_app()
    wait_for(
        lambda: admin(stack, "GET", "")["provider"] == PROVIDERS[0], what="reload", timeout_s=5
    )
    return stack


def admin(stack: Stack, method: str, path: str, **kw: Any) -> Any:
    r = requests.request(
        method,
        f"{stack.app_url}/api/admin/payments{path}",
        headers={"Authorization": f"Bearer {stack.secrets['admin_token']}"},
        timeout=30,
        **kw,
    )
    assert r.status_code == 200, r.text
    return r.json()


def payer(stack: Stack) -> PaymentProbe:
    return PaymentProbe(stack, 5.0, prefix="it" + secrets.token_hex(2))


def reconcile_one(stack: Stack, ack: Any) -> Any:
    """The reconciliation of one test's payment (other tests' payments left aside)."""
    charges = [c for p in PROVIDERS for c in fetch_charges(stack.provider_url(p), p)]
    return reconcile(
        [p for p in app_payments(Ctx(stack)) if p.key == ack.key],
        [c for c in charges if c.key == ack.key],
        [ack],
    )


def row(stack: Stack, order_id: int) -> tuple:
    return stack.sql(
        "primary",
        f"SELECT status, provider, charge_id, source FROM payments WHERE order_id = {order_id}",
    )[0]


def test_providers_are_labelled_and_published_on_loopback_only(stack):
    for p in PROVIDERS:
        c = engine.client().containers.get(stack.name(p))
        assert c.labels[engine.RUN_LABEL] == stack.run_id
        for binding in c.attrs["NetworkSettings"]["Ports"]["8090/tcp"]:
            assert binding["HostIp"] == "127.0.0.1"


def test_a_payment_captures_once_and_the_webhook_arrives(healthy):
    probe = payer(healthy)
    probe()
    ack = probe.acked()[-1]
    assert (ack.status, ack.provider) == ("captured", "provider")
    # paying the same order again answers the same charge: no second charge
    r = probe.client.session.post(
        probe.client.url(f"/api/orders/{ack.order_id}/pay"),
        headers={"Authorization": f"Bearer {probe.client.token()}"},
        timeout=5,
    )
    assert r.status_code == 200 and r.json()["charge_id"] == ack.charge_id
    charges = [
        c for c in fetch_charges(healthy.provider_url("provider"), "provider") if c.key == ack.key
    ]
    assert [c.id for c in charges] == [ack.charge_id]
    listing = requests.get(healthy.provider_url("provider") + "/v1/charges", timeout=5).json()
    ours = next(c for c in listing["data"] if c["id"] == ack.charge_id)
    wait_for(
        lambda: (
            requests.get(
                healthy.provider_url("provider") + f"/v1/charges/{ack.charge_id}", timeout=5
            ).json()["webhook"]
            == "delivered"
        ),
        what="the webhook to be delivered",
        timeout_s=10,
    )
    assert ours["amount_cents"] == 100


def test_a_forged_webhook_is_refused(healthy):
    body = b'{"type": "charge.succeeded", "data": {}}'
    r = requests.post(
        healthy.app_url + "/api/payments/webhook",
        data=body,
        headers={"X-Provider-Signature": "sha256=" + "0" * 64, "Content-Type": "application/json"},
        timeout=5,
    )
    assert r.status_code == 401


def test_a_hung_provider_leaves_the_order_and_a_pending_payment(healthy):
    set_fault(
        healthy.provider_url("provider"),
        ["hang"],
        drop_webhooks=True,
        token=healthy.secrets["payments_control_token"],
    )
    probe = payer(healthy)
    with pytest.raises(ProbeError, match="pending"):
        probe()
    ack = probe.acked()[-1]
    assert ack.status == "pending"
    assert row(healthy, ack.order_id)[:2] == ("pending", "provider")
    assert (
        healthy.sql("primary", f"SELECT count(*) FROM orders WHERE id = {ack.order_id}")[0][0] == 1
    )
    failures = admin(healthy, "GET", "")["failures"]
    assert failures.get("timeout", 0) >= 1
    # the runbook: verify (never charged there), switch, process at the backup, reconcile
    verified = admin(healthy, "POST", "/verify")
    assert ack.order_id in verified["not_charged"] and verified["unknown"] == []
    healthy.set_payment_provider("provider-backup")
    healthy.reload_app()
    wait_for(
        lambda: admin(healthy, "GET", "")["provider"] == "provider-backup",
        what="switch",
        timeout_s=5,
    )
    processed = admin(healthy, "POST", "/process-pending", json={"verified_only": True})
    assert ack.order_id in processed["captured"]
    assert row(healthy, ack.order_id)[:2] == ("captured", "provider-backup")
    rec = reconcile_one(healthy, ack)
    assert rec.ok, rec.describe()


def test_a_capture_whose_answer_is_lost_is_recorded_by_its_webhook(healthy):
    set_fault(
        healthy.provider_url("provider"),
        ["capture-hang"],
        drop_webhooks=False,
        token=healthy.secrets["payments_control_token"],
    )
    probe = payer(healthy)
    with pytest.raises(ProbeError, match="pending"):
        probe()
    ack = probe.acked()[-1]
    wait_for(
        lambda: row(healthy, ack.order_id)[0] == "captured",
        what="the webhook to capture the payment",
        timeout_s=10,
    )
    _, provider, charge_id, source = row(healthy, ack.order_id)
    assert (provider, source) == ("provider", "webhook") and charge_id.startswith("ch_provider_")


def test_reprocessing_unverified_payments_elsewhere_charges_twice(healthy):
    """What the sabotaged runbook does, step by step: the failed provider captured the charge
    (its answer and webhook lost); charging it again at the backup unverified is a double charge
    that reconciliation names."""
    set_fault(
        healthy.provider_url("provider"),
        ["capture-hang"],
        drop_webhooks=True,
        token=healthy.secrets["payments_control_token"],
    )
    probe = payer(healthy)
    with pytest.raises(ProbeError, match="pending"):
        probe()
    ack = probe.acked()[-1]
    healthy.set_payment_provider("provider-backup")
    healthy.reload_app()
    wait_for(
        lambda: admin(healthy, "GET", "")["provider"] == "provider-backup",
        what="switch",
        timeout_s=5,
    )
    skipped = admin(healthy, "POST", "/process-pending", json={"verified_only": True})
    assert ack.order_id in skipped["skipped_unverified"]  # the guard holds by default
    admin(healthy, "POST", "/process-pending", json={"verified_only": False})
    rec = reconcile_one(healthy, ack)
    assert [key for key, _ in rec.duplicates] == [ack.key]
