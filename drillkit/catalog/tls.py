"""The certificate-expiry drill (seed 003, "Infrastructure Incidents": SSL certificate issues,
`openssl x509 ... | grep "Not After"`): its fault, runbook steps, checks and the "tls" probe, for
stacks with a web front (`stack: {web: true}`).

The web front serves the public site over TLS on port 443 with a certificate from the run's own CA
(drillkit/stack/services/web.py: the CA key stays in the harness, every private key is a secret of
the run). The "tls" probe (added whenever the stack has a web front) makes a fresh handshake at
every tick, as a new visitor would, and fails unless the certificate served chains to the run CA,
names the web front's host, is valid now with at least the threshold (TLS_MIN_REMAINING_S) left,
and the front answers over that connection. So an expired (or about to expire) certificate is
downtime: RTO = T_recovered - T_fault stops only once nginx serves a good one.

A certificate written to disk is not served until nginx reloads: the reload step proves the new
one is served on fresh handshakes, while keep-alive clients, started before the reload, show
whether any request failed across it (nginx's graceful reload: new workers take new connections,
old ones finish what they serve and close their idle keep-alive connections).
"""

from __future__ import annotations

import http.client
import shlex
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from drillkit.core.context import DrillContext
from drillkit.core.probes import ProbeError
from drillkit.core.registry import CHECKS, FAULTS, PROBES, RECOVERY, Duration
from drillkit.errors import CheckFailed, EnvironmentBroken, StepFailed
from drillkit.stack.services.web import (
    TLS_CERT,
    TLS_HOSTNAME,
    Issued,
    Web,
    cert_facts,
    certificate_problems,
    parse_openssl_dates,
    served_certificate,
    verified_handshake,
)
from drillkit.stack.stack import Stack
from drillkit.wait import wait_for

WEB = "web"
DAY_S = 86400.0


@dataclass
class ReloadWatch:
    """What the keep-alive clients saw across one reload."""

    requests: int = 0
    failures: list[str] = field(default_factory=list)
    reconnects: int = 0
    """Kept-alive connections the server closed as a request went out: the client sent it again
    on a new connection, as HTTP lets a client do for an idempotent request (RFC 9110 9.2.2)."""
    after_switch: int = 0
    """Requests answered after the new certificate was first served on a fresh handshake."""


@dataclass
class TlsDrill:
    """Facts the drill's steps hand on (ctx.part)."""

    issued: list[Issued] = field(default_factory=list)
    """Certificates the runbook issued, oldest first (keys are secrets: never recorded)."""
    installed: Issued | None = None
    watch: ReloadWatch | None = None


def web_kind(stack: Stack) -> Web:
    kind = stack.kinds.get(WEB)
    if not isinstance(kind, Web):
        raise EnvironmentBroken("the stack has no web front (scenario needs stack: {web: true})")
    return kind


def served_problems(web: Web, timeout_s: float = 2.0) -> tuple[list[str], str]:
    """What is wrong with the certificate the web front serves now (a fresh handshake) and the
    front's answer over it; with the served certificate's description. Empty list: all right."""
    now = time.time()
    cert, status = served_certificate(web.tls_port, TLS_HOSTNAME, timeout_s)
    if web.ca is None:
        raise EnvironmentBroken("the web front has no run CA")
    problems = certificate_problems(cert, web.ca.cert, TLS_HOSTNAME, now, web.min_remaining_s)
    if status != 200:
        problems.append(f"/healthz over TLS answered {status}")
    return problems, cert_facts(cert).describe(now)


@PROBES("tls")
def tls_probes(stack: Stack, timeout_s: float) -> dict[str, Callable[[], object]]:
    """The "tls" probe for a stack with a web front (none otherwise): a fresh TLS handshake to the
    public site at every tick, the served certificate judged (run CA, host name, validity, the
    threshold of validity left), and /healthz answered 200 over it."""
    if stack.spec.is_compose or WEB not in stack.services:
        return {}
    web = web_kind(stack)
    if web.ca is None:  # not made by this harness (configure() did not run): nothing to judge by
        return {}

    def tls() -> None:
        problems, described = served_problems(web, timeout_s)
        if problems:
            raise ProbeError(f"served certificate: {'; '.join(problems)} ({described})")

    return {"tls": tls}


def _exec_root(stack: Stack, cmd: str, what: str) -> tuple[int, str]:
    res = stack.exec(WEB, cmd, user="root", timeout_s=30)
    return res.exit_code, res.output


def _nginx(stack: Stack, args: str, what: str) -> str:
    code, out = _exec_root(stack, f"nginx {args}", what)
    if code != 0:
        raise StepFailed(what, f"`nginx {args}` exited {code}: {out[-400:]}")
    return out


def _serving(web: Web, serial: str, timeout_s: float, what: str) -> None:
    """Until fresh handshakes get the certificate with `serial`."""
    seen: list[str] = []

    def served() -> bool:
        cert, _status = served_certificate(web.tls_port, TLS_HOSTNAME, 2.0)
        seen.append(f"{cert.serial_number:x}")
        return seen[-1] == serial

    try:
        wait_for(
            served,
            what=f"nginx to serve certificate {serial}",
            timeout_s=timeout_s,
            interval_s=0.02,
            context=web.stack.log_context(WEB),
        )
    except EnvironmentBroken as exc:
        last = seen[-1] if seen else "none"
        raise StepFailed(
            what, f"certificate {serial} not served (last seen {last}): {exc}"
        ) from exc


# ----- fault -----------------------------------------------------------------------------------


@FAULTS("expire-certificate", needs=("web",))
def expire_certificate(
    ctx: DrillContext, expired: bool = True, margin: Duration = Duration(3600.0)
) -> str:
    """The certificate the web front serves lapses: a real certificate from the run CA, issued
    90 days before its notAfter, which lies `margin` in the past (`expired`) or `margin` ahead
    (about to expire: `margin` must be below the threshold), is installed and nginx reloaded, as
    if the clock had run past the served one. The step ends once fresh handshakes get it."""
    web = web_kind(ctx.stack)
    now = time.time()
    end = now - margin if expired else now + margin
    if not expired and margin >= web.min_remaining_s:
        raise StepFailed(
            "expire-certificate",
            f"margin {margin:.0f} s is not below the {web.min_remaining_s:.0f} s threshold",
        )
    old = web.issue(not_after=end, not_before=end - 90 * DAY_S)
    web.install(old)
    _nginx(ctx.stack, "-s reload", "expire-certificate")
    _serving(web, old.serial, 10.0, "expire-certificate")
    facts = cert_facts(old.cert)
    ctx.figure("expired_cert_serial", old.serial)
    ctx.evidence("lapsed certificate (ground truth)", facts.describe(time.time()))
    state = "expired" if expired else "about to expire"
    return f"nginx serves certificate {old.serial}, {state}: notAfter {facts.not_after:%F %T} UTC"


# ----- runbook steps ------------------------------------------------------------------------------


INSPECT_TRIES = 3
"""How many times inspect-certificate asks: once, in a paired nightly run on 2 cores, the exec's
answer held the shell's `echo` but neither openssl's output (both had exited 0)."""


@RECOVERY("inspect-certificate", needs=("web",))
def inspect_certificate(ctx: DrillContext) -> str:
    """Seed 003 "Investigation Steps: SSL certificate" (`openssl x509 ... | grep "Not After"`):
    in the web container, `openssl x509 -noout -enddate` (with subject, issuer, serial, start
    date) on the installed certificate and `openssl x509 -checkend` against the threshold; and
    the certificate served now (a fresh handshake). Both are recorded; it never fails."""
    stack = ctx.stack
    web = web_kind(stack)
    cert = shlex.quote(TLS_CERT)
    threshold = int(web.min_remaining_s)
    cmd = (
        f"openssl x509 -in {cert} -noout -subject -issuer -serial -startdate -enddate"
        f" && {{ openssl x509 -in {cert} -noout -checkend {threshold}; echo checkend=$?; }}"
    )
    for attempt in range(1, INSPECT_TRIES + 1):  # read-only: asking again changes nothing
        code, out = _exec_root(stack, cmd, "inspect-certificate")
        if code != 0:
            raise StepFailed("inspect-certificate", f"openssl x509 exited {code}: {out[-400:]}")
        dates = parse_openssl_dates(out)
        if "notAfter" in dates:
            break
        ctx.figure("cert_inspect_incomplete_output", attempt)
    else:
        raise StepFailed("inspect-certificate", f"no notAfter in openssl's output: {out[-400:]}")
    lines = out.strip().splitlines()
    checkend = " ".join(lines[-2:]) if lines and lines[-1].startswith("checkend=") else "?"
    problems, served = served_problems(web)
    on_disk_left = dates["notAfter"].timestamp() - time.time()
    ctx.figure("cert_on_disk_not_after", f"{dates['notAfter']:%F %T} UTC")
    ctx.figure("cert_on_disk_remaining_s", round(on_disk_left))
    ctx.figure("cert_served_problems", problems)
    ctx.evidence(
        f"openssl x509 -noout -enddate, -checkend {threshold} ({TLS_CERT}, in {WEB})", out.strip()
    )
    ctx.evidence("certificate served (fresh handshake)", served)
    verdict = "; ".join(problems) if problems else "valid"
    return (
        f"on disk notAfter {dates['notAfter']:%F %T} UTC (-checkend: {checkend}); served: {verdict}"
    )


@RECOVERY("issue-certificate", needs=("web",))
def issue_certificate(ctx: DrillContext, days: int = 30) -> str:
    """Issue a new server certificate (and key) for the web front from the run CA, valid `days`
    from now. Not installed yet (install-certificate)."""
    web = web_kind(ctx.stack)
    if days * DAY_S < web.min_remaining_s:
        raise StepFailed(
            "issue-certificate",
            f"{days} days is below the {web.min_remaining_s / DAY_S:.0f}-day threshold",
        )
    issued = web.issue(not_after=time.time() + days * DAY_S)
    ctx.part(TlsDrill).issued.append(issued)
    ctx.figure("new_cert_serial", issued.serial)
    ctx.figure("new_cert_not_after", f"{issued.not_after:%F %T} UTC")
    return f"issued certificate {issued.serial} for {TLS_HOSTNAME}, notAfter {issued.not_after:%F %T} UTC"


@RECOVERY("install-certificate", needs=("web",))
def install_certificate(ctx: DrillContext) -> str:
    """Put the newest issued certificate and its key where nginx reads them (each file replaced
    atomically) and test the configuration with them (`nginx -t` loads the pair). nginx keeps
    serving the old one until it reloads."""
    state = ctx.part(TlsDrill)
    if not state.issued:
        raise StepFailed("install-certificate", "no certificate issued (issue-certificate first)")
    web = web_kind(ctx.stack)
    new = state.issued[-1]
    web.install(new)
    _nginx(ctx.stack, "-t -q", "install-certificate")
    state.installed = new
    return f"certificate {new.serial} installed at {TLS_CERT}; nginx -t accepts it"


def _watcher(port: int, stop: threading.Event, watch: ReloadWatch, lock: threading.Lock) -> None:
    """A keep-alive client: GET / over one TLS connection after another until `stop`. It does
    not verify the certificate (the one served before the reload has lapsed): it counts requests
    that failed."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn: http.client.HTTPSConnection | None = None
    used = 0
    while not stop.is_set():
        if conn is None:
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5.0)
            used = 0
        try:
            conn.request("GET", "/", headers={"Host": TLS_HOSTNAME})
            r = conn.getresponse()
            r.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            conn.close()
            conn = None
            with lock:
                if used:
                    watch.reconnects += 1  # sent again on a new connection (the next turn)
                else:
                    watch.requests += 1
                    watch.failures.append(f"new connection: {type(exc).__name__}: {exc}")
            continue
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            conn = None
            with lock:
                watch.requests += 1
                watch.failures.append(f"{type(exc).__name__}: {exc}")
            continue
        used += 1
        with lock:
            watch.requests += 1
            if r.status != 200:
                watch.failures.append(f"GET / answered {r.status}")
        if r.will_close:
            conn.close()
            conn = None
        stop.wait(0.02)  # pacing, not a condition: under 50 requests a second per client
    if conn is not None:
        conn.close()


@RECOVERY("reload-web-front", needs=("web",))
def reload_web_front(
    ctx: DrillContext,
    clients: int = 2,
    requests_after: int = 10,
    timeout: Duration = Duration(10.0),
) -> str:
    """Seed 003's fix for certificate issues, without dropping connections: `nginx -s reload`
    (graceful: new workers load the installed certificate, old ones finish their requests). With
    `clients` keep-alive clients already sending requests, it waits until fresh handshakes get the
    installed certificate and each client has had `requests_after` more answers (their figures
    are judged by the tls-reload-graceful check). Fails if the new certificate is not served
    within `timeout`."""
    state = ctx.part(TlsDrill)
    if state.installed is None:
        raise StepFailed("reload-web-front", "no certificate installed (install-certificate first)")
    if not 1 <= clients <= 8 or not 1 <= requests_after <= 1000:
        raise StepFailed("reload-web-front", "clients must be 1-8 and requests_after 1-1000")
    web = web_kind(ctx.stack)
    watch = ReloadWatch()
    lock = threading.Lock()
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=_watcher, args=(web.tls_port, stop, watch, lock), daemon=True, name=f"ka-{i}"
        )
        for i in range(clients)
    ]
    at_switch = 0
    for t in threads:
        t.start()
    try:
        wait_for(
            lambda: watch.requests >= clients * 5,
            what="the keep-alive clients to be answered",
            timeout_s=10.0,
            interval_s=0.01,
        )
        _nginx(ctx.stack, "-s reload", "reload-web-front")
        _serving(web, state.installed.serial, timeout, "reload-web-front")
        with lock:
            at_switch = watch.requests
        wait_for(
            lambda: watch.requests - at_switch >= clients * requests_after,
            what="the keep-alive clients to be answered after the reload",
            timeout_s=10.0,
            interval_s=0.01,
        )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10.0)
    with lock:
        watch.after_switch = watch.requests - at_switch
    state.watch = watch
    ctx.figure("reload_client_requests", watch.requests)
    ctx.figure("reload_client_failures", len(watch.failures))
    ctx.figure("reload_keepalive_reconnects", watch.reconnects)
    if watch.failures:
        ctx.evidence(
            "keep-alive clients' failures across the reload", "\n".join(watch.failures[:50])
        )
    return (
        f"nginx reloaded; certificate {state.installed.serial} served; {clients} keep-alive "
        f"clients: {watch.requests} requests, {len(watch.failures)} failed, "
        f"{watch.reconnects} closed keep-alive connections reopened"
    )


def _strict_problems(web: Web) -> list[str]:
    """The served certificate's problems as the harness judges them, and as a strict TLS client
    (Python's ssl, the run CA as its only trust anchor) sees them."""
    problems, described = served_problems(web)
    try:
        verified_handshake(web.tls_port, web.ca_file, TLS_HOSTNAME)
    except ssl.SSLCertVerificationError as exc:
        problems.append(f"a strict client refuses it: {exc.verify_message}")
    return [f"{p} ({described})" for p in problems[:1]] + problems[1:]


@RECOVERY("verify-certificate", needs=("web",))
def verify_certificate(ctx: DrillContext, timeout: Duration = Duration(10.0)) -> str:
    """The served certificate chains to the run CA, names the web front, is valid with at least
    the threshold left, a strict client accepts it, and the site answers over TLS. Waits up to
    `timeout`, then fails naming what is wrong."""
    web = web_kind(ctx.stack)
    seen: list[list[str]] = []

    def right() -> bool:
        seen.append(_strict_problems(web))
        return not seen[-1]

    try:
        wait_for(right, what="a valid certificate served", timeout_s=timeout, interval_s=0.05)
    except EnvironmentBroken as exc:
        raise StepFailed("verify-certificate", "; ".join(seen[-1]) if seen else str(exc)) from exc
    _problems, described = served_problems(web)
    return f"served certificate valid: {described}"


# ----- checks ----------------------------------------------------------------------------------


@CHECKS(
    "tls-certificate-valid",
    title="The served TLS certificate is valid (run CA, host name, threshold of validity left)",
    needs=("web",),
)
def tls_certificate_valid(ctx: DrillContext) -> str:
    """A fresh handshake gets a certificate that chains to the run CA, is for the web front's
    host name, is valid now with at least the threshold left (a strict client accepts it too), and
    the front answers /healthz over it."""
    web = web_kind(ctx.stack)
    problems = _strict_problems(web)
    if problems:
        raise CheckFailed("; ".join(problems))
    _problems, described = served_problems(web)
    return f"served: {described}; at least {web.min_remaining_s / DAY_S:.0f} days left"


@CHECKS(
    "tls-reload-graceful",
    title="No client request failed across the certificate reload",
    needs=("web",),
)
def tls_reload_graceful(ctx: DrillContext) -> str:
    """The reload step ran with keep-alive clients, they were answered after the new certificate
    was served, and none of their requests failed."""
    watch = ctx.part(TlsDrill).watch
    if watch is None:
        raise CheckFailed("no reload with keep-alive clients was recorded (reload-web-front)")
    if watch.failures:
        raise CheckFailed(
            f"{len(watch.failures)} of {watch.requests} requests failed across the reload, "
            f"e.g. {watch.failures[0][:200]}"
        )
    if watch.after_switch <= 0:
        raise CheckFailed("no request was answered after the new certificate was served")
    return (
        f"{watch.requests} requests, none failed ({watch.after_switch} after the switch; "
        f"{watch.reconnects} closed keep-alive connections reopened)"
    )
