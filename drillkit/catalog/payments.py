"""The payment provider failure drill (seed 000 "Procedure 4: Payment Processing Failure", seed 004
"Payment System Recovery"): its fault, runbook steps, the "payment" probe and the
`payments-reconciled` check, for stacks started with `stack: {payments: true}`.

The providers are the stack's two stub payment providers (drillkit/stack/services/payments.py): `provider`, the
one the app charges at first, and `provider-backup`. The fault is real at the level that matters:
the provider stops answering charge requests (500s, and requests it holds with no answer, past
the app's payment timeout, some of them after capturing the charge) and its webhooks are lost.
The app must degrade without losing an order: it keeps the order, queues the payment as pending
and answers 202 within its timeout. The runbook switches the app to the backup provider, verifies
every pending payment against the ledger of the provider it was attempted at (a charge captured
whose answer never came is recorded, not charged again), processes the rest at the backup, and
reconciles the app's records with both providers' ledgers.

Availability here includes paying: the "payment" probe (added whenever the stack has payments)
creates an order and pays for it at every tick and fails unless the payment is captured, so
detection is the first payment that is not captured and RTO ends when payments capture again.
Every payment the app acknowledges to the probe (captured, or pending) is kept: the RPO analogue
is "no acknowledged payment lost, none charged twice, none left pending", checked against the
app's database and the providers' own ledgers.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from drillkit.core.context import DrillContext, app_client
from drillkit.core.probes import ProbeError
from drillkit.core.registry import (
    CHECKS,
    FAULTS,
    PROBES,
    RECOVERY,
    Duration,
    Service,
    optional_services,
)
from drillkit.errors import CheckFailed, EnvironmentBroken, StepFailed
from drillkit.stack.services.payments import (
    BEHAVIOURS,
    PROVIDERS,
    AppPayment,
    PaymentAck,
    ProviderCharge,
    Reconciliation,
    fetch_charges,
    fetch_status,
    pay_answers,
    payment_table,
    reconcile,
    set_fault,
)
from drillkit.stack.stack import Stack
from drillkit.wait import wait_for

DEFAULT_PATTERN = ["error", "capture-hang", "hang"]
"""Each charge request in turn: a 500; captured, then no answer; no answer, nothing captured."""

optional_services("payments", *PROVIDERS)


@dataclasses.dataclass
class PaymentsTested:
    """The payments test-payment made (each under its own key prefix)."""

    acks: list[PaymentAck] = dataclasses.field(default_factory=list)


def _require_payments(stack: Stack) -> None:
    if PROVIDERS[0] not in stack.services:
        raise EnvironmentBroken(
            "the stack has no payment providers (scenario needs stack: {payments: true})"
        )


def _admin(ctx: DrillContext, method: str, path: str, timeout_s: float = 60.0, **kw: Any) -> Any:
    r = requests.request(
        method,
        ctx.stack.app_url + path,
        headers={"Authorization": f"Bearer {ctx.stack.secrets['admin_token']}"},
        timeout=timeout_s,
        **kw,
    )
    if r.status_code != 200:
        raise StepFailed(path, f"{method} {path} answered {r.status_code}: {r.text[:300]}")
    return r.json()


def app_payments(ctx: DrillContext) -> list[AppPayment]:
    """Every row of the app's payments table, read from the current primary."""
    rows = ctx.stack.sql(
        ctx.primary,
        "SELECT order_id, idempotency_key, amount_cents, status, provider, charge_id"
        " FROM payments ORDER BY order_id",
    )
    return [AppPayment(int(r[0]), r[1], int(r[2]), r[3], r[4], r[5]) for r in rows]


def _all_charges(ctx: DrillContext) -> list[ProviderCharge]:
    return [c for p in PROVIDERS for c in fetch_charges(ctx.stack.provider_url(p), p, timeout_s=10)]


def reconcile_now(ctx: DrillContext) -> Reconciliation:
    """The app's payments against both providers' ledgers and the probe's acknowledgements.

    Read in causal order, so that a system still taking payments gives a consistent cut: the
    client's acks (an ack follows the app's record), then the app's payments (a record follows
    the provider's charge), then the providers' ledgers. A charge made at a provider just before
    the app's payments were read may not be recorded yet: only the charges an earlier read of
    the ledgers already held are judged unrecorded. What can still differ (a payment in flight
    while the app was read) settles within milliseconds: see `reconcile_payments`' settle."""
    earlier = {(c.provider, c.id) for c in _all_charges(ctx)}
    probe = ctx.probes.extra.get("payment")
    acked = probe.acked() if isinstance(probe, PaymentProbe) else []
    payments = app_payments(ctx)
    rec = reconcile(payments, _all_charges(ctx), acked)
    return dataclasses.replace(
        rec, unrecorded=tuple(c for c in rec.unrecorded if (c.provider, c.id) in earlier)
    )


# ----- the payment probe ----------------------------------------------------------------------


class PaymentProbe:
    """Creates an order and pays for it; fails unless the payment is captured. Keeps every
    acknowledgement (captured or pending) for the reconciliation."""

    def __init__(
        self,
        stack: Stack,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        prefix: str = "p",
    ) -> None:
        self.stack = stack
        self.clock = clock
        self.prefix = prefix
        """Order keys are `<prefix>-<run>-<n>`: a second payer needs its own prefix."""
        self.client = app_client(stack, timeout_s=timeout_s)
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._acked: list[PaymentAck] = []

    def acked(self) -> list[PaymentAck]:
        with self._lock:
            return list(self._acked)

    def __call__(self) -> None:
        key = f"{self.prefix}-{self.stack.run_id}-{next(self._seq)}"
        r = self.client.create_order(key, f"payment probe {key}")
        if r.status_code == 401:
            self.client.login()
            r = self.client.create_order(key, f"payment probe {key}")
        if r.status_code not in (200, 201):
            raise ProbeError(f"create order answered {r.status_code}: {r.text[:120]}")
        order_id = int(r.json()["id"])
        r = self.client.session.post(
            self.client.url(f"/api/orders/{order_id}/pay"),
            headers={"Authorization": f"Bearer {self.client.token()}"},
            timeout=self.client.timeout_s,
        )
        if r.status_code not in (200, 201, 202):
            raise ProbeError(f"pay answered {r.status_code}: {r.text[:120]}")
        body = r.json()
        ack = PaymentAck(
            order_id=order_id,
            key=str(body["payment_key"]),
            status=str(body["status"]),
            provider=str(body["provider"]),
            charge_id=body.get("charge_id"),
            t_ack=self.clock(),
        )
        with self._lock:
            self._acked.append(ack)
        if ack.status != "captured":
            raise ProbeError(f"payment {ack.status} (202): {str(body.get('reason'))[:120]}")


@PROBES("payment")
def payment_probes(stack: Stack, timeout_s: float) -> dict[str, Callable[[], object]]:
    """The "payment" probe for a stack with payment providers (none otherwise)."""
    if stack.spec.is_compose or PROVIDERS[0] not in stack.services:
        return {}
    return {"payment": PaymentProbe(stack, timeout_s)}


# ----- fault ----------------------------------------------------------------------------------


@FAULTS("fail-payment-provider", needs=("payments",))
def fail_payment_provider(
    ctx: DrillContext,
    service: Service = Service("provider"),
    pattern: list[str] | None = None,
    drop_webhooks: bool = True,
) -> str:
    """The payment provider `service` fails: each charge request takes the next behaviour of
    `pattern` in turn (default: a 500; captured, then no answer; no answer and nothing captured,
    the two held past the app's payment timeout) and, with `drop_webhooks`, no webhook is sent.
    Its status page reports a major outage; its ledger (the dashboard) stays readable. It stays
    failed for the rest of the drill."""
    stack = ctx.stack
    _require_payments(stack)
    behaviours = list(pattern or DEFAULT_PATTERN)
    unknown = [b for b in behaviours if b not in BEHAVIOURS]
    if unknown:
        raise StepFailed(
            "fail-payment-provider", f"unknown behaviours {unknown}; known: {BEHAVIOURS}"
        )
    state = set_fault(stack.provider_url(service), behaviours, drop_webhooks)
    if (
        state.get("pattern") != behaviours
        or fetch_status(stack.provider_url(service)).get("indicator") != "major"
    ):
        raise StepFailed("fail-payment-provider", f"{service} did not take the fault: {state}")
    ctx.evidence(
        "payment provider fault (ground truth)",
        f"{service}: charge requests cycle through {behaviours}; webhooks "
        f"{'dropped' if drop_webhooks else 'delivered'}",
    )
    return f"{service} fails charges ({', '.join(behaviours)}), webhooks " + (
        "lost" if drop_webhooks else "delivered"
    )


# ----- runbook steps ------------------------------------------------------------------------------


@RECOVERY("check-payment-status", needs=("payments",))
def check_payment_status(
    ctx: DrillContext,
    confirm_failures: int = 0,
    timeout: Duration = Duration(15.0),
    log_lines: int = 2000,
) -> str:
    """Seed 000 procedure 4, immediate actions 1-3: every provider's status page, the app's
    payment configuration and counters (provider in use, pending and captured payments, failures
    by kind, attempts in flight), and the app log's payment lines (`logs api | grep -i payment`)
    as evidence. With `confirm_failures` the step first waits (up to `timeout`) until the app
    has counted that many failed payment attempts: the runbook acts on a confirmed outage (an
    alert threshold, seed 004 "Configure alerting thresholds"), not on one failed payment.
    Otherwise it records what it finds and never fails."""
    stack = ctx.stack
    _require_payments(stack)
    if confirm_failures:
        seen: list[int] = []

        def confirmed() -> bool:
            failures = _admin(ctx, "GET", "/api/admin/payments", timeout_s=5).get("failures", {})
            seen.append(sum(failures.values()))
            return seen[-1] >= confirm_failures

        try:
            wait_for(
                confirmed,
                what=f"{confirm_failures} failed payment attempts (the alert threshold)",
                timeout_s=timeout,
                interval_s=0.05,
                transient=(requests.RequestException,),
            )
        except EnvironmentBroken as exc:
            raise StepFailed(
                "check-payment-status",
                f"only {seen[-1] if seen else 0} failed payment attempts: {exc}",
            ) from exc
    pages = []
    for p in PROVIDERS:
        try:
            status = fetch_status(stack.provider_url(p))
            pages.append(f"{p}: {status.get('indicator')} ({status.get('description')})")
        except (requests.RequestException, ValueError, KeyError) as exc:
            pages.append(f"{p}: status page unreachable ({type(exc).__name__})")
    app = _admin(ctx, "GET", "/api/admin/payments", timeout_s=10)
    lines = [ln for ln in stack.logs("app", tail=log_lines).splitlines() if "payment" in ln.lower()]
    ctx.evidence("payment providers' status pages", "\n".join(pages))
    ctx.evidence("app payment status", str(app))
    ctx.evidence("app log, payment lines (tail)", "\n".join(lines[-50:]) or "(none)")
    ctx.figure("payments_pending_at_check", int(app.get("counts", {}).get("pending", 0)))
    return (
        "; ".join(pages)
        + f"; app charges at {app.get('provider')}, counts {app.get('counts')}, failures "
        f"{app.get('failures')}"
    )


@RECOVERY("switch-payment-provider", needs=("payments",))
def switch_payment_provider(
    ctx: DrillContext,
    provider: Service = Service("provider-backup"),
    drain: Duration = Duration(10.0),
) -> str:
    """Seed 004 step 1, "Switch to backup payment provider": only to a provider whose status page
    says it is operational; the app's payment_provider file is rewritten and the app reloaded
    (SIGHUP); the step waits until the app charges at `provider` and until no attempt is still in
    flight at another provider (each is bounded by the app's payment timeout), so no payment can
    turn pending after the pending ones are processed."""
    stack = ctx.stack
    _require_payments(stack)
    status = fetch_status(stack.provider_url(provider))
    if status.get("indicator") != "none":
        raise StepFailed(
            "switch-payment-provider", f"{provider} is not operational either: {status}"
        )
    before = _admin(ctx, "GET", "/api/admin/payments", timeout_s=10).get("provider")
    stack.set_payment_provider(provider)
    stack.reload_app()
    seen: list[dict[str, Any]] = []

    def switched_and_drained() -> bool:
        seen.append(_admin(ctx, "GET", "/api/admin/payments", timeout_s=5))
        now = seen[-1]
        return now.get("provider") == provider and not any(
            p != provider for p in now.get("in_flight", {})
        )

    try:
        wait_for(
            switched_and_drained,
            what=f"the app to charge at {provider} with nothing in flight elsewhere",
            timeout_s=drain,
            interval_s=0.05,
            transient=(requests.RequestException,),
        )
    except EnvironmentBroken as exc:
        raise StepFailed(
            "switch-payment-provider", f"{exc}; last: {seen[-1] if seen else None}"
        ) from exc
    return f"app switched from {before} to {provider} ({status.get('description')}); no attempt in flight elsewhere"


@RECOVERY("verify-payment-integrity", needs=("payments",))
def verify_payment_integrity(ctx: DrillContext) -> str:
    """Seed 004 step 2, "Verify transaction integrity": every pending payment is looked up in the
    ledger of the provider it was attempted at (its dashboard). Found: that provider captured it
    but its answer and webhook were lost; the app records the capture (no new charge). Not found:
    it was never charged there, and is marked safe to charge elsewhere. Fails when a payment
    cannot be verified (its provider's ledger does not answer): processing it would risk a
    second charge."""
    _require_payments(ctx.stack)
    out = _admin(ctx, "POST", "/api/admin/payments/verify")
    found, not_charged, unknown = out["captured_found"], out["not_charged"], out["unknown"]
    ctx.figure("payments_found_captured_at_failed_provider", len(found))
    ctx.figure("payments_verified_not_charged", len(not_charged))
    ctx.evidence(
        "payment integrity verification",
        f"captured at the provider, answer lost (recorded): orders {found}\n"
        f"not charged (safe to retry): orders {not_charged}\nunknown: {unknown}",
    )
    if unknown:
        raise StepFailed(
            "verify-payment-integrity",
            f"{len(unknown)} pending payments could not be verified: {unknown[:3]}",
        )
    return (
        f"{len(found) + len(not_charged)} pending payments verified: {len(found)} had been "
        f"captured (answer and webhook lost; recorded, not charged again), "
        f"{len(not_charged)} never charged"
    )


@RECOVERY("process-pending-payments", needs=("payments",))
def process_pending_payments(ctx: DrillContext, verified_only: bool = True) -> str:
    """Seed 004 step 3, "Process pending transactions": the app charges every pending payment at
    the provider it now uses, each under its own idempotency key. With `verified_only` (the
    default) a payment last attempted elsewhere is charged only once verified as not charged
    there. Fails unless every pending payment ends captured."""
    _require_payments(ctx.stack)
    out = _admin(
        ctx,
        "POST",
        "/api/admin/payments/process-pending",
        json={"verified_only": verified_only},
    )
    captured, pending, skipped = out["captured"], out["still_pending"], out["skipped_unverified"]
    ctx.figure("payments_processed", len(captured))
    if pending or skipped:
        raise StepFailed(
            "process-pending-payments",
            f"{len(pending)} still pending after a new attempt at {out['provider']}, "
            f"{len(skipped)} skipped as unverified",
        )
    return f"{len(captured)} pending payments captured at {out['provider']}"


@RECOVERY("reconcile-payments", needs=("payments",))
def reconcile_payments(ctx: DrillContext, settle: Duration = Duration(3.0)) -> str:
    """Seed 004 step 4, "Reconcile payment records": the app's payments table against both
    providers' own ledgers (and every payment the app acknowledged): each payment captured by
    exactly one charge, the one it records, for its amount; no charge the app does not record.
    Payments go on while it runs, so a difference may be a payment in flight: the comparison is
    repeated for up to `settle`; a discrepancy that persists fails the step. The tables are kept
    as evidence."""
    _require_payments(ctx.stack)
    seen: list[Reconciliation] = []

    def reconciled() -> bool:
        seen.append(reconcile_now(ctx))
        return seen[-1].ok

    try:
        wait_for(
            reconciled,
            what="the payment records to reconcile",
            timeout_s=settle,
            interval_s=0.2,
            transient=(requests.RequestException,),
        )
    except EnvironmentBroken as exc:
        if not seen:
            raise StepFailed("reconcile-payments", str(exc)) from exc
    rec = seen[-1]
    ctx.evidence("app payments at reconciliation", payment_table(app_payments(ctx)))
    ctx.evidence("payment reconciliation", rec.describe())
    if not rec.ok:
        raise StepFailed("reconcile-payments", "; ".join(rec.problems()))
    return rec.describe()


@RECOVERY("test-payment", needs=("payments",))
def test_payment(ctx: DrillContext, provider: Service = Service("provider-backup")) -> str:
    """Seed 000 procedure 4 step 4 "Test Payment Processing" (and seed 004 step 5, "Resume normal
    operations"): a new order is paid through the app and must be captured at `provider`."""
    stack = ctx.stack
    _require_payments(stack)
    made = ctx.part(PaymentsTested).acks
    n = len(made)
    probe = PaymentProbe(stack, 5.0, prefix=f"test{n}")
    try:
        probe()
    except ProbeError as exc:
        raise StepFailed("test-payment", str(exc)) from exc
    ack = probe.acked()[-1]
    if ack.provider != provider:
        raise StepFailed("test-payment", f"captured at {ack.provider}, expected {provider}")
    made.append(ack)
    return f"order {ack.order_id} paid: {ack.charge_id} at {ack.provider}"


# ----- checks ----------------------------------------------------------------------------------


@CHECKS(
    "payments-reconciled",
    title="Every paid order recorded exactly once (app records vs both providers' ledgers)",
    needs=("payments",),
)
def payments_reconciled(ctx: DrillContext) -> str:
    """Every paid order recorded exactly once: each payment in the app's database captured by
    exactly one charge at exactly one provider (the charge it records, for its amount), none
    pending, no provider charge the app does not record, and every payment acknowledged to the
    client (captured or pending) present. Checked against the app's database and both
    providers' own ledgers."""
    _require_payments(ctx.stack)
    rec = reconcile_now(ctx)
    ctx.figure("payments_acknowledged", rec.acked)
    ctx.figure("payments_captured_once", rec.captured_once)
    ctx.figure("payments_charged_twice", len(rec.duplicates))
    ctx.figure("payments_left_pending", len(rec.pending))
    ctx.figure("payments_lost", len(rec.lost))
    ctx.figure("payments_unrecorded_charges", len(rec.unrecorded))
    if rec.acked == 0:
        raise CheckFailed("no payment was acknowledged: nothing proves payments work")
    if not rec.ok:
        raise CheckFailed("; ".join(rec.problems()))
    return rec.describe()


@CHECKS(
    "payments-degraded-gracefully",
    title="Payments degraded gracefully during the provider failure (order kept, 202, no 5xx)",
    needs=("payments",),
)
def payments_degraded_gracefully(ctx: DrillContext) -> str:
    """While the provider failed the app degraded instead of failing: it answered every payment
    request (from its log, since the fault) with 201, 200 or 202 (order kept, payment queued),
    never a 5xx, and answered in time: no failed payment probe since the fault ended in an error
    other than a pending payment (a client timeout, a refused order)."""
    _require_payments(ctx.stack)
    t_fault = ctx.result.markers.get("fault")
    if t_fault is None:
        raise CheckFailed("no fault was injected")
    since = ctx.result.wall(t_fault)  # a float: the engine cuts the log at sub-second precision
    ctx.stack.container("app")  # this run's (blast radius)
    log = ctx.log_since("app", since)
    answers = pay_answers(log)
    problems = []
    bad = {status: n for status, n in answers.items() if status not in (200, 201, 202)}
    if bad:
        problems.append(f"the app answered payment requests with {bad}")
    if not answers.get(202):
        problems.append("no payment was queued as pending: the provider failure was not seen")
    failed = [
        s for s in ctx.probes.snapshot() if s.probe == "payment" and s.t >= t_fault and not s.ok
    ]
    other = [s for s in failed if "payment pending (202)" not in (s.error or "")]
    if other:
        problems.append(
            f"{len(other)} of {len(failed)} failed payments were not a pending answer, e.g. "
            f"{other[0].error}"
        )
    if problems:
        raise CheckFailed("; ".join(problems))
    slowest = max((s.latency_s for s in failed), default=0.0)
    return (
        f"payment answers since the fault: {dict(sorted(answers.items()))}; "
        f"{len(failed)} payments queued as pending, the slowest answered in {slowest:.2f} s"
    )
