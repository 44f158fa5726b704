"""The web front's TLS pieces without containers: the run CA and its certificates, judging a served
certificate (chain, host name, validity, the threshold), reading openssl's dates, and keeping
private keys secret (drillkit/stack/services/web.py, drillkit/stack/secrets.py)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from drillkit.stack.secrets import Secrets
from drillkit.stack.services.web import (
    TLS_HOSTNAME,
    TLS_MIN_REMAINING_S,
    TLS_VALIDITY_S,
    RunCA,
    cert_facts,
    certificate_problems,
    load_certificate,
    parse_openssl_dates,
    pem_secret_lines,
)

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
DAY = 86400.0


@pytest.fixture(scope="module")
def ca() -> RunCA:
    return RunCA("drillkit run CA test", now=NOW)


def test_a_new_certificate_is_valid_for_the_web_front(ca: RunCA) -> None:
    issued = ca.issue(now=NOW)
    assert certificate_problems(issued.cert, ca.cert, TLS_HOSTNAME, NOW) == []
    facts = cert_facts(issued.cert)
    assert facts.not_after.timestamp() == NOW + TLS_VALIDITY_S
    assert facts.dns_names == (TLS_HOSTNAME,)
    assert facts.issuer == ca.cert.subject.rfc4514_string()
    # the chain nginx serves: the leaf, then the CA
    chain = x509.load_pem_x509_certificates(issued.chain_pem)
    assert [c.serial_number for c in chain] == [issued.cert.serial_number, ca.cert.serial_number]
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_an_expired_certificate_is_named_expired(ca: RunCA) -> None:
    old = ca.issue(not_after=NOW - 3600, now=NOW)
    problems = certificate_problems(old.cert, ca.cert, TLS_HOSTNAME, NOW)
    assert len(problems) == 1
    assert problems[0].startswith("expired at 2027-01-15 07:00:00 UTC (1.0 h ago)")
    assert "expired 1.0 h ago" in cert_facts(old.cert).describe(NOW)


def test_a_certificate_below_the_threshold_fails_above_it_passes(ca: RunCA) -> None:
    soon = ca.issue(not_after=NOW + 2 * DAY, now=NOW)
    problems = certificate_problems(soon.cert, ca.cert, TLS_HOSTNAME, NOW)
    assert problems == ["expires at 2027-01-17 08:00:00 UTC: 2.0 d left, below the 7.0 d threshold"]
    later = ca.issue(not_after=NOW + TLS_MIN_REMAINING_S + 60, now=NOW)
    assert certificate_problems(later.cert, ca.cert, TLS_HOSTNAME, NOW) == []
    # the threshold is the caller's
    assert certificate_problems(soon.cert, ca.cert, TLS_HOSTNAME, NOW, min_remaining_s=DAY) == []


def test_another_ca_and_another_host_and_not_yet_valid_are_refused(ca: RunCA) -> None:
    other = RunCA("someone else", now=NOW)
    foreign = other.issue(now=NOW)
    problems = certificate_problems(foreign.cert, ca.cert, TLS_HOSTNAME, NOW)
    assert len(problems) == 1 and problems[0].startswith("not issued by the run CA")
    wrong_host = ca.issue("shop.example", now=NOW)
    assert certificate_problems(wrong_host.cert, ca.cert, TLS_HOSTNAME, NOW) == [
        "not for web (names: shop.example)"
    ]
    future = ca.issue(not_before=NOW + DAY, not_after=NOW + 60 * DAY, now=NOW)
    assert certificate_problems(future.cert, ca.cert, TLS_HOSTNAME, NOW) == [
        "not valid before 2027-01-16 08:00:00 UTC"
    ]


def test_issue_refuses_an_empty_validity_period(ca: RunCA) -> None:
    with pytest.raises(ValueError, match="is not after notBefore"):
        ca.issue(not_before=NOW, not_after=NOW - 1, now=NOW)


def test_load_certificate_reads_pem_and_der(ca: RunCA) -> None:
    issued = ca.issue(now=NOW)
    der = issued.cert.public_bytes(serialization.Encoding.DER)
    assert load_certificate(issued.chain_pem).serial_number == issued.cert.serial_number
    assert load_certificate(der).serial_number == issued.cert.serial_number
    with pytest.raises(ValueError):
        load_certificate(b"not a certificate")


def test_openssl_dates_from_enddate_and_from_text() -> None:
    out = (
        "subject=CN = web\nissuer=CN = drillkit run CA x\nserial=1A2B\n"
        "notBefore=Oct 17 07:00:00 2026 GMT\nnotAfter=Jan  5 07:00:00 2027 GMT\n"
    )
    dates = parse_openssl_dates(out)
    assert dates["notBefore"].isoformat() == "2026-10-17T07:00:00+00:00"
    assert dates["notAfter"].isoformat() == "2027-01-05T07:00:00+00:00"
    text = "            Not Before: Oct 17 07:00:00 2026 GMT\n            Not After : Jan  5 07:00:00 2027 GMT\n"
    assert parse_openssl_dates(text) == dates
    assert parse_openssl_dates("Certificate will expire\n") == {}
    with pytest.raises(ValueError, match="not an openssl date"):
        parse_openssl_dates("notAfter=2027-01-05T07:00:00Z")


def test_a_private_key_is_registered_line_by_line(ca: RunCA, tmp_path: Path) -> None:
    pem = ca.issue(now=NOW).key_pem
    lines = pem_secret_lines(pem)
    assert lines and all(" " not in line and not line.startswith("-") for line in lines)
    body = pem.decode().split("-----")[2]
    assert base64.b64decode("".join(lines)) == base64.b64decode("".join(body.split()))
    secrets = Secrets(tmp_path / "run")
    before = {p.name for p in (tmp_path / "run").rglob("*")}
    for i, line in enumerate(lines):
        secrets.register(f"web_tls_key.{i}", line)
    assert set(lines) <= set(secrets.values())
    assert {p.name for p in (tmp_path / "run").rglob("*")} == before  # no file written
