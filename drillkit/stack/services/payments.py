"""Payment records and their reconciliation: the app's payments, the providers' charges, and the
payments the app acknowledged to its client.

The payments kind (`Payments`, at the end; `stack: {payments: true}`) runs two stub payment providers (images/payments:
a tiny Stripe-like charge API with an in-memory ledger, signed webhooks, a status page and a
fault control), the primary `provider` and `provider-backup`. The app charges each order once per
idempotency key at the provider its `payment_provider` config file names. After a provider
failure the proof is "every paid order is recorded exactly once": each of the app's payments is
captured, by exactly one charge at exactly one provider, the charge it records, for its amount;
no provider holds a charge the app does not record; and no payment the app acknowledged to its
client (captured, or accepted as pending) is missing.

`reconcile` is pure (unit-tested without containers); the few functions at the end call a
provider's API through its port published on 127.0.0.1.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import requests

from drillkit.stack.kinds import ServiceKind, service_kind
from drillkit.wait import wait_for

PROVIDERS = ("provider", "provider-backup")
"""The stub providers' service names (and host names on the run's network): primary, backup."""
PAYMENTS_IMAGE = "payments"
PROVIDER_PORT = 8090
WEBHOOK_PATH = "/api/payments/webhook"
STATUS_PATH = "/api/v2/status.json"
FAULT_PATH = "/_drill/fault"
CHARGES_PATH = "/v1/charges"
BEHAVIOURS = ("ok", "error", "hang", "capture-hang")
"""What a failing provider does with each charge request, in the turn its fault pattern gives:
answer normally; 500 at once; no answer and no charge; charge, then no answer."""


@dataclass(frozen=True)
class AppPayment:
    """A row of the app's `payments` table."""

    order_id: int
    key: str
    amount_cents: int
    status: str
    """'pending' or 'captured'."""
    provider: str
    charge_id: str | None


@dataclass(frozen=True)
class ProviderCharge:
    """A charge in a provider's own ledger."""

    provider: str
    id: str
    key: str
    amount_cents: int
    status: str = "succeeded"


@dataclass(frozen=True)
class PaymentAck:
    """What the app answered a client that paid for an order: 'captured' (201/200, with the
    charge) or 'pending' (202: the order kept, the payment queued). Both are promises."""

    order_id: int
    key: str
    status: str
    provider: str
    charge_id: str | None
    t_ack: float


def _short(items: Iterable[str], limit: int = 5) -> str:
    items = list(items)
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


@dataclass(frozen=True)
class Reconciliation:
    """The app's payments against the providers' ledgers and the client's acknowledgements."""

    payments: int
    charges: int
    acked: int
    captured_once: int
    """Payments captured by exactly one charge, the one the app records, for its amount."""
    pending: tuple[AppPayment, ...] = ()
    duplicates: tuple[tuple[str, tuple[ProviderCharge, ...]], ...] = ()
    """(payment key, its charges) for every key charged more than once (at any providers)."""
    unrecorded: tuple[ProviderCharge, ...] = ()
    """Charges (not part of a duplicate) that the app does not record as its payment's capture."""
    missing: tuple[AppPayment, ...] = ()
    """Payments the app records as captured by a charge no provider holds."""
    amount_mismatch: tuple[AppPayment, ...] = ()
    lost: tuple[PaymentAck, ...] = ()
    """Acknowledged to the client, and absent from the app's payments (or captured by another
    charge than the one acknowledged)."""

    @property
    def ok(self) -> bool:
        return not (
            self.pending
            or self.duplicates
            or self.unrecorded
            or self.missing
            or self.amount_mismatch
            or self.lost
        )

    def problems(self) -> list[str]:
        out = []
        if self.duplicates:
            out.append(
                f"{len(self.duplicates)} orders charged more than once: "
                + _short(
                    f"{key} ({' + '.join(f'{c.id} at {c.provider}' for c in charges)})"
                    for key, charges in self.duplicates
                )
            )
        if self.pending:
            out.append(
                f"{len(self.pending)} payments left pending: "
                + _short(f"order {p.order_id} (last tried at {p.provider})" for p in self.pending)
            )
        if self.unrecorded:
            out.append(
                f"{len(self.unrecorded)} charges the app does not record: "
                + _short(f"{c.id} at {c.provider} for {c.key}" for c in self.unrecorded)
            )
        if self.missing:
            out.append(
                f"{len(self.missing)} captures no provider holds: "
                + _short(
                    f"order {p.order_id} ({p.charge_id} at {p.provider})" for p in self.missing
                )
            )
        if self.amount_mismatch:
            out.append(
                f"{len(self.amount_mismatch)} charged amounts differ from the order's: "
                + _short(f"order {p.order_id}" for p in self.amount_mismatch)
            )
        if self.lost:
            out.append(
                f"{len(self.lost)} acknowledged payments lost: "
                + _short(f"order {a.order_id} ({a.status})" for a in self.lost)
            )
        return out

    def describe(self) -> str:
        head = (
            f"{self.payments} payments in the app, {self.charges} charges at the providers, "
            f"{self.acked} acknowledged to the client; {self.captured_once} captured exactly once"
        )
        problems = self.problems()
        return head + ("; " + "; ".join(problems) if problems else "; every one reconciled")


def reconcile(
    app_payments: Iterable[AppPayment],
    charges: Iterable[ProviderCharge],
    acked: Iterable[PaymentAck] = (),
) -> Reconciliation:
    """Match every payment with the providers' charges for its key (see the module docstring)."""
    payments = list(app_payments)
    succeeded = [c for c in charges if c.status == "succeeded"]
    acks = list(acked)
    by_key: dict[str, list[ProviderCharge]] = defaultdict(list)
    for c in succeeded:
        by_key[c.key].append(c)
    duplicates = tuple(
        (key, tuple(sorted(cs, key=lambda c: (c.provider, c.id))))
        for key, cs in sorted(by_key.items())
        if len(cs) > 1
    )
    duplicated = {key for key, _ in duplicates}
    app_by_key = {p.key: p for p in payments}
    pending, missing, mismatch = [], [], []
    once = 0
    for p in payments:
        if p.status != "captured":
            pending.append(p)
            continue
        match = [
            c for c in by_key.get(p.key, []) if (c.provider, c.id) == (p.provider, p.charge_id)
        ]
        if not match:
            missing.append(p)
        elif match[0].amount_cents != p.amount_cents:
            mismatch.append(p)
        elif p.key not in duplicated:
            once += 1
    unrecorded = tuple(
        c
        for c in succeeded
        if c.key not in duplicated
        and (
            c.key not in app_by_key
            or (app_by_key[c.key].provider, app_by_key[c.key].charge_id) != (c.provider, c.id)
        )
    )
    lost = tuple(
        a
        for a in acks
        if a.key not in app_by_key
        or (a.status == "captured" and app_by_key[a.key].charge_id != a.charge_id)
    )
    return Reconciliation(
        payments=len(payments),
        charges=len(succeeded),
        acked=len(acks),
        captured_once=once,
        pending=tuple(pending),
        duplicates=duplicates,
        unrecorded=unrecorded,
        missing=tuple(missing),
        amount_mismatch=tuple(mismatch),
        lost=lost,
    )


def charges_from_listing(provider: str, listing: Any) -> list[ProviderCharge]:
    """A provider's `GET /v1/charges` answer as charges (the provider named by who answered)."""
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list):
        raise ValueError(f"{provider}: charge listing has no data list")
    return [
        ProviderCharge(
            provider=provider,
            id=str(c["id"]),
            key=str(c["idempotency_key"]),
            amount_cents=int(c["amount_cents"]),
            status=str(c.get("status", "")),
        )
        for c in data
    ]


def payment_table(payments: Iterable[AppPayment]) -> str:
    """The app's payments as a small text table (evidence)."""
    lines = ["order_id  status    provider         charge_id            key"]
    for p in sorted(payments, key=lambda p: p.order_id):
        lines.append(
            f"{p.order_id:<9} {p.status:<9} {p.provider:<16} {p.charge_id or '-':<20} {p.key}"
        )
    return "\n".join(lines)


_PAY_LINE = re.compile(r'request method="POST" path="/api/orders/\d+/pay" status=(\d{3})')


def pay_answers(app_log: str) -> Counter[int]:
    """How many times the app answered each HTTP status to `POST /api/orders/<id>/pay`, from its
    log (one `request` line per answer)."""
    return Counter(int(m.group(1)) for m in _PAY_LINE.finditer(app_log))


# ----- a provider's API, from the harness ------------------------------------------------------


def fetch_charges(base_url: str, provider: str, timeout_s: float = 5.0) -> list[ProviderCharge]:
    r = requests.get(base_url + CHARGES_PATH, timeout=timeout_s)
    r.raise_for_status()
    return charges_from_listing(provider, r.json())


def fetch_status(base_url: str, timeout_s: float = 2.0) -> dict[str, Any]:
    """The provider's status page: {'indicator': 'none' | 'major', 'description': ...}."""
    r = requests.get(base_url + STATUS_PATH, timeout=timeout_s)
    r.raise_for_status()
    return dict(r.json()["status"])


def control_headers(token: str) -> dict[str, str]:
    """What a call to a provider's drill control carries: the run's control token (the stub
    answers 401 without it; the app never holds it)."""
    return {"Authorization": f"Bearer {token}"}


def set_fault(
    base_url: str, pattern: list[str], drop_webhooks: bool, token: str, timeout_s: float = 5.0
) -> dict[str, Any]:
    r = requests.put(
        base_url + FAULT_PATH,
        json={"pattern": pattern, "drop_webhooks": drop_webhooks},
        headers=control_headers(token),
        timeout=timeout_s,
    )
    r.raise_for_status()
    return dict(r.json())


# ----- the kind --------------------------------------------------------------------------------


@service_kind
class Payments(ServiceKind):
    """The two stub providers (images/payments): each its charge API, ledger, status page and
    fault control on port 8090; webhooks go to the app by name on the internal network. The app
    is configured to charge at the first."""

    name = "payments"
    order = 40
    start_rank = 20
    ready_rank = 30

    def services(self) -> tuple[str, ...]:
        return PROVIDERS

    def images(self) -> dict[str, str]:
        return {"payments": PAYMENTS_IMAGE}

    def configure(self) -> None:
        self.stack.set_payment_provider(PROVIDERS[0])

    def start(self) -> None:
        s = self.stack
        for service in PROVIDERS:
            s.create(
                service,
                s.image_tags["payments"],
                env={
                    "PROVIDER_NAME": service,
                    "PORT": str(PROVIDER_PORT),
                    "WEBHOOK_URL": f"http://app:{s.spec.app.port}{WEBHOOK_PATH}",
                },
                mounts={
                    str(s.secrets.payments_dir): {"bind": "/run/drillkit/secrets", "mode": "ro"}
                },
                ports={f"{PROVIDER_PORT}/tcp": ("127.0.0.1", None)},
            )

    def wait_ready(self) -> None:
        for service in PROVIDERS:
            self.wait(service)

    def url(self, service: str) -> str:
        """A provider's API, through its port published on 127.0.0.1."""
        return f"http://127.0.0.1:{self.stack.port(service, PROVIDER_PORT)}"

    def wait(self, service: str, timeout_s: float | None = None) -> None:
        """Until a provider answers its status page."""
        s = self.stack

        def serving() -> bool:
            s.require_running(service)
            return requests.get(self.url(service) + STATUS_PATH, timeout=1.0).status_code == 200

        wait_for(
            serving,
            what=f"the payment provider {service} to answer",
            timeout_s=timeout_s or s.options.ready_timeout_s,
            context=s.log_context(service),
        )
