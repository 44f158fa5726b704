"""The web kind (`stack: {web: true}`) and the web front's content: its known-good backup and SHA-256
manifest, and comparing content with it.

The web kind (`Web`, at the end) starts the web front (images/web: nginx serving /var/www/site,
/api/ proxied to the app) and, once it serves, takes the known-good backup: the content tree read out of the
container as a tarball, kept in the harness's run dir (off the web host, out of an attacker's
reach), with a manifest of every file's SHA-256 in `sha256sum` format. The defacement drill's
detection, restore, verification, probe and checklist all compare against that manifest.

TLS: the public site is also served over TLS on port 443 (images/web/drillkit-tls.conf), from a CA
made for the run (`RunCA`: its key stays in the harness's run dir, never on the web host). The kind
issues the first certificate (TLS_VALIDITY_S, for TLS_HOSTNAME) into the run dir's web-tls folder,
bind-mounted as /etc/nginx/tls; both private keys are registered as secrets of the run.
`served_certificate` reads what nginx serves (a real handshake) and `certificate_problems` judges
it (chain to the run CA, hostname, not expired, at least a threshold of validity left).

Everything here but take_backup, served_certificate and the kind is pure (no engine), so it is
unit-tested without containers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import ipaddress
import os
import re
import socket
import ssl
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from drillkit.stack.kinds import ServiceKind, service_kind
from drillkit.wait import wait_for

if TYPE_CHECKING:
    from docker.models.containers import Container

    from drillkit.stack.stack import Stack

WEB_IMAGE = "web"
WEB_PORT = 80
"""The public site (maintenance-aware)."""
WEB_PREVIEW_PORT = 8081
"""The same content, never behind the maintenance page: restored content is verified here as
served before the public site comes back."""
WEB_ROOT = "/var/www/site"
"""The served content (a labelled volume in the stack; the image's files populate it)."""
MAINTENANCE_FLAG = "/run/drillkit-web/maintenance"
"""While this file exists nginx answers 503 with the maintenance page on every site path."""
MAINTENANCE_PAGE = "/var/www/maintenance/maintenance.html"

TLS_PORT = 443
"""The public site over TLS."""
TLS_DIR = "/etc/nginx/tls"
"""Where nginx reads its certificate and key (the run dir's web-tls folder, bind-mounted)."""
TLS_CERT = f"{TLS_DIR}/server.crt"
"""The served chain: the leaf, then the run CA's certificate."""
TLS_KEY = f"{TLS_DIR}/server.key"
TLS_HOSTNAME = "web"
"""The name the certificate is issued for (the web front's host name on the run's network); the
harness connects to 127.0.0.1 and asks for this name (SNI) and checks it."""
TLS_VALIDITY_S = 30 * 86400.0
"""How long a certificate the run CA issues is valid by default."""
TLS_MIN_REMAINING_S = 7 * 86400.0
"""Below this much validity left a served certificate counts as failing (about to expire)."""
OPENSSL_DATE_LINE = re.compile(r"^\s*(notBefore|notAfter|Not Before|Not After)\s*[=:]\s*(.*)$")
TLS_BACKDATE_S = 3600.0
"""A new certificate's notBefore is this far in the past (clock skew between hosts)."""

Manifest = dict[str, str]
"""Relative path (POSIX, no leading './') -> SHA-256 hex of the file's bytes."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _relative(name: str, strip: int) -> str | None:
    """A tar member's name below its first `strip` components, or None when nothing is left."""
    parts = [p for p in PurePosixPath(name).parts if p not in (".", "/")]
    if ".." in parts:
        raise ValueError(f"unsafe path in archive: {name!r}")
    rest = parts[strip:]
    return "/".join(rest) if rest else None


def manifest_from_tar(data: bytes, strip: int = 1) -> Manifest:
    """The manifest of every regular file in a tar (as `docker cp`/get_archive returns a directory:
    its own name is the first component, dropped by `strip`)."""
    out: Manifest = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            rel = _relative(member.name, strip)
            f = tar.extractfile(member)
            if rel is None or f is None:
                continue
            out[rel] = sha256(f.read())
    return out


def format_sha256sum(manifest: Manifest) -> str:
    """The manifest as `sha256sum` writes it (checkable with `sha256sum -c` from the content dir)."""
    return "".join(f"{digest}  ./{path}\n" for path, digest in sorted(manifest.items()))


def parse_sha256sum(text: str) -> Manifest:
    """Parse `sha256sum` output (`<hex>  ./path` or `<hex> *path`); paths relative, without './'.

    A line sha256sum escaped (a leading backslash: the name held a newline or a backslash) keeps
    the escaped name, so it never matches a manifest entry and shows up as a difference."""
    out: Manifest = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        digest, sep, name = line.partition(" ")
        digest = digest.lstrip("\\")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a sha256sum line: {line[:120]!r}")
        name = name[1:] if name[:1] in (" ", "*") else name
        while name.startswith("./"):
            name = name[2:]
        out[name] = digest
    return out


@dataclass(frozen=True)
class ManifestDiff:
    """How content differs from the known-good manifest."""

    modified: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    added: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not (self.modified or self.missing or self.added)

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(sorted({*self.modified, *self.missing, *self.added}))

    def describe(self) -> str:
        if self.clean:
            return "every file matches the known-good manifest"
        parts = []
        for label, paths in (
            ("modified", self.modified),
            ("missing", self.missing),
            ("added", self.added),
        ):
            if paths:
                parts.append(f"{label}: {', '.join(paths)}")
        return "; ".join(parts)


def compare(expected: Manifest, actual: Manifest) -> ManifestDiff:
    """Files whose digest differs, files of the manifest that are absent, files not in it."""
    return ManifestDiff(
        modified=tuple(sorted(p for p in expected if p in actual and actual[p] != expected[p])),
        missing=tuple(sorted(p for p in expected if p not in actual)),
        added=tuple(sorted(p for p in actual if p not in expected)),
    )


def served_paths(manifest: Manifest, index: str = "index.html") -> dict[str, str]:
    """URL path -> manifest entry whose bytes it must serve: every file at its own path, and each
    directory's index file at the directory's URL ('/' serves index.html)."""
    out = {"/" + path: path for path in sorted(manifest)}
    for path in sorted(manifest):
        p = PurePosixPath(path)
        if p.name == index:
            parent = p.parent.as_posix()
            out["/" if parent == "." else f"/{parent}/"] = path
    return out


def select_tar(data: bytes, files: list[str] | None, strip: int = 1) -> tuple[bytes, list[str]]:
    """A tar holding only the named files (relative paths; None: every file) and the directories
    above them, names kept as in `data`; with the relative paths it holds. Unknown names raise
    KeyError naming them."""
    out = io.BytesIO()
    taken: list[str] = []
    with (
        tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as src,
        tarfile.open(fileobj=out, mode="w") as dst,
    ):
        members = src.getmembers()
        by_rel = {_relative(m.name, strip): m for m in members if m.isfile()}
        wanted = sorted(p for p in by_rel if p) if files is None else list(files)
        unknown = [f for f in wanted if f not in by_rel]
        if unknown:
            raise KeyError(f"not in the backup: {', '.join(unknown)}")
        dirs = {
            PurePosixPath(by_rel[f].name).parents[i].as_posix()
            for f in wanted
            for i in range(len(PurePosixPath(by_rel[f].name).parents) - 1)
        }
        for m in members:
            if m.isdir() and PurePosixPath(m.name).as_posix() in dirs:
                dst.addfile(m)
        for rel in wanted:
            m = by_rel[rel]
            dst.addfile(m, src.extractfile(m))
            taken.append(rel)
    return out.getvalue(), taken


@dataclass(frozen=True)
class WebBackup:
    """One known-good backup of the web content: `id` is its UTC timestamp (the runbook's
    `restore-web-content.sh [backup-timestamp]`)."""

    id: str
    tarball: Path
    manifest: Manifest
    taken_wall: float

    def tar_bytes(self) -> bytes:
        return self.tarball.read_bytes()


def backup_id(wall: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall))


def take_backup(container: Container, dest: Path, root: str = WEB_ROOT) -> WebBackup:
    """Read the content tree out of the web container (Docker's archive API) into
    `dest/<id>/site.tar`, and write its manifest beside it as `SHA256SUMS`."""
    wall = time.time()
    stream, _stat = container.get_archive(root)
    data = b"".join(stream)
    manifest = manifest_from_tar(data)
    if not manifest:
        raise ValueError(f"{container.name}:{root} holds no file to back up")
    bid = backup_id(wall)
    folder = dest / bid
    folder.mkdir(parents=True, exist_ok=True)
    tarball = folder / "site.tar"
    tarball.write_bytes(data)
    (folder / "SHA256SUMS").write_text(format_sha256sum(manifest))
    return WebBackup(id=bid, tarball=tarball, manifest=manifest, taken_wall=wall)


# ----- TLS: the run's CA, its certificates, and judging a served one ------------------------------


def _utc(wall: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(wall, tz=dt.UTC)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def pem_secret_lines(pem: bytes) -> list[str]:
    """The base64 lines of a PEM block: what the run registers as secrets for a private key (the
    leak scan looks for runs of printable characters, and a PEM's armour lines hold spaces)."""
    return [
        line
        for line in pem.decode("ascii").splitlines()
        if line.strip() and not line.startswith("-----")
    ]


@dataclass(frozen=True)
class Issued:
    """A certificate the run CA issued, with its key (the key is a secret: never logged)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain_pem: bytes
    """The leaf then the CA certificate, as nginx serves it."""

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)

    @property
    def serial(self) -> str:
        return f"{self.cert.serial_number:x}"

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc


class RunCA:
    """A certificate authority made for one run: an EC P-256 key and a self-signed CA
    certificate (10 years; path length 0). Its key never leaves the harness."""

    def __init__(self, name: str, now: float | None = None) -> None:
        wall = time.time() if now is None else now
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_utc(wall - TLS_BACKDATE_S))
            .not_valid_after(_utc(wall + 3650 * 86400.0))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        hostname: str = TLS_HOSTNAME,
        not_after: float | None = None,
        not_before: float | None = None,
        now: float | None = None,
    ) -> Issued:
        """A server certificate for `hostname` (and 127.0.0.1) with a new key, valid from
        `not_before` (default: TLS_BACKDATE_S ago) to `not_after` (default: TLS_VALIDITY_S from
        now); both may lie in the past (an expired certificate is a real one, just old)."""
        wall = time.time() if now is None else now
        end = wall + TLS_VALIDITY_S if not_after is None else not_after
        start = min(wall - TLS_BACKDATE_S, end - 86400.0) if not_before is None else not_before
        if end <= start:
            raise ValueError(f"notAfter {_utc(end)} is not after notBefore {_utc(start)}")
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_utc(start))
            .not_valid_after(_utc(end))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.cert_pem
        return Issued(cert=cert, key=key, chain_pem=chain)


@dataclass(frozen=True)
class CertFacts:
    """What a certificate says, for the record (no key material)."""

    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    dns_names: tuple[str, ...]

    def remaining_s(self, now: float) -> float:
        return self.not_after.timestamp() - now

    def describe(self, now: float) -> str:
        left = self.remaining_s(now)
        when = f"expired {_span(-left)} ago" if left <= 0 else f"{_span(left)} left"
        return (
            f"subject {self.subject}, issuer {self.issuer}, serial {self.serial}, "
            f"notBefore {self.not_before:%Y-%m-%d %H:%M:%S} UTC, "
            f"notAfter {self.not_after:%Y-%m-%d %H:%M:%S} UTC ({when})"
        )


def _span(seconds: float) -> str:
    """A duration for a person: '3.2 d', '5.0 h', '42 s'."""
    s = abs(seconds)
    if s >= 86400:
        return f"{s / 86400:.1f} d"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    return f"{s:.0f} s"


def load_certificate(data: bytes) -> x509.Certificate:
    """The first certificate in PEM or DER bytes; ValueError when there is none."""
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def cert_facts(cert: x509.Certificate) -> CertFacts:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return CertFacts(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=f"{cert.serial_number:x}",
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        dns_names=names,
    )


def certificate_problems(
    cert: x509.Certificate,
    ca: x509.Certificate,
    hostname: str,
    now: float,
    min_remaining_s: float = TLS_MIN_REMAINING_S,
) -> list[str]:
    """What is wrong with a served certificate: not issued (signed) by the run CA, not for
    `hostname` (subjectAltName DNS names), not yet valid, expired, or with less than
    `min_remaining_s` of validity left. Empty: valid."""
    problems = []
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError) as exc:  # InvalidSignature has no message
        problems.append(
            f"not issued by the run CA ({type(exc).__name__}: {exc or 'bad signature'})"
        )
    facts = cert_facts(cert)
    if hostname not in facts.dns_names:
        problems.append(f"not for {hostname} (names: {', '.join(facts.dns_names) or 'none'})")
    if facts.not_before.timestamp() > now:
        problems.append(f"not valid before {facts.not_before:%Y-%m-%d %H:%M:%S} UTC")
    left = facts.remaining_s(now)
    if left <= 0:
        problems.append(f"expired at {facts.not_after:%Y-%m-%d %H:%M:%S} UTC ({_span(-left)} ago)")
    elif left < min_remaining_s:
        problems.append(
            f"expires at {facts.not_after:%Y-%m-%d %H:%M:%S} UTC: {_span(left)} left, below the "
            f"{_span(min_remaining_s)} threshold"
        )
    return problems


def parse_openssl_dates(text: str) -> dict[str, dt.datetime]:
    """`openssl x509 -noout -startdate -enddate` (or `-text`'s 'Not Before :' / 'Not After :'
    lines, as the seed's `grep "Not After"` shows them) -> {'notBefore': .., 'notAfter': ..}
    (UTC). ValueError for a line that names a date in another format."""
    out: dict[str, dt.datetime] = {}
    for line in text.splitlines():
        m = OPENSSL_DATE_LINE.match(line)
        if m is None:
            continue
        name = "notBefore" if m.group(1) in ("notBefore", "Not Before") else "notAfter"
        value = " ".join(m.group(2).split())
        try:
            when = dt.datetime.strptime(value, "%b %d %H:%M:%S %Y %Z")
        except ValueError as exc:
            raise ValueError(f"not an openssl date: {value[:60]!r}") from exc
        out[name] = when.replace(tzinfo=dt.UTC)
    return out


def served_certificate(
    port: int, hostname: str = TLS_HOSTNAME, timeout_s: float = 2.0, path: str = "/healthz"
) -> tuple[x509.Certificate, int]:
    """The leaf certificate a TLS server on 127.0.0.1:`port` serves for `hostname` (SNI), read
    from a fresh handshake that does not verify it (the caller judges it), and the HTTP status
    the server answers `path` with on that connection."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as raw,
        ctx.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        if der is None:
            raise ssl.SSLError("the server sent no certificate")
        tls.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n".encode()
        )
        buf = b""
        while b"\r\n" not in buf and len(buf) < 256:
            chunk = tls.recv(256)
            if not chunk:
                break
            buf += chunk
        head = buf.decode("latin-1", "replace")
    parts = head.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ssl.SSLError(f"not an HTTP answer over TLS: {head[:40]!r}")
    return x509.load_der_x509_certificate(der), int(parts[1])


def verified_handshake(
    port: int, ca_file: Path, hostname: str = TLS_HOSTNAME, timeout_s: float = 2.0
) -> None:
    """A handshake as a strict client makes it (Python's ssl: chain to `ca_file`, the hostname,
    the validity period); raises ssl.SSLCertVerificationError naming what failed."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as raw,
        ctx.wrap_socket(raw, server_hostname=hostname),
    ):
        pass


@service_kind
class Web(ServiceKind):
    """The web front: the public site on port 80, a staff preview of the same content (never
    behind the maintenance page) on 8081; the content in a labelled volume that the image's site
    fills on first mount. Once it serves, its content is backed up into the run dir."""

    name = "web"
    order = 30
    start_rank = 40
    ready_rank = 40

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack)
        self.backups: list[WebBackup] = []
        """The content's known-good backups, oldest first."""
        self.tls_dir = stack.run_dir / "web-tls"
        """Bind-mounted as TLS_DIR: the served chain and key (what nginx loads on start/reload)."""
        self.ca_dir = stack.run_dir / "web-ca"
        """The run CA's certificate (its key stays in memory) and the certificates it issued."""
        self.ca: RunCA | None = None
        self.min_remaining_s = TLS_MIN_REMAINING_S

    def configure(self) -> None:
        """Make the run CA and the first certificate (TLS_VALIDITY_S) for nginx to serve."""
        self.ca = RunCA(f"drillkit run CA {self.stack.run_id}")
        for d in (self.tls_dir, self.ca_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        (self.ca_dir / "ca.crt").write_bytes(self.ca.cert_pem)
        self.register_key("web_tls_ca_key", key_pem(self.ca.key))
        self.install(self.issue())

    @property
    def ca_file(self) -> Path:
        return self.ca_dir / "ca.crt"

    def register_key(self, name: str, pem: bytes) -> None:
        """Record a private key's base64 lines as secrets of the run (redacted, leak-scanned)."""
        for i, line in enumerate(pem_secret_lines(pem)):
            self.stack.secrets.register(f"{name}.{i}", line)

    def issue(self, not_after: float | None = None, not_before: float | None = None) -> Issued:
        """A new server certificate from the run CA (its key registered as a secret), kept in the
        CA folder by serial."""
        if self.ca is None:
            raise RuntimeError("the web front's run CA is made in configure()")
        issued = self.ca.issue(TLS_HOSTNAME, not_after=not_after, not_before=not_before)
        self.register_key(f"web_tls_key_{issued.serial}", issued.key_pem)
        (self.ca_dir / f"{issued.serial}.crt").write_bytes(issued.chain_pem)
        return issued

    def install(self, issued: Issued) -> None:
        """Write the chain and key where nginx reads them (each replaced atomically). nginx
        serves them from its next start or `nginx -s reload`, not before."""
        for name, data in (("server.key", issued.key_pem), ("server.crt", issued.chain_pem)):
            tmp = self.tls_dir / f".{name}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.tls_dir / name)

    def services(self) -> tuple[str, ...]:
        return ("web",)

    def images(self) -> dict[str, str]:
        return {"web": WEB_IMAGE}

    def start(self) -> None:
        s = self.stack
        content = s.volume("web-content", "web")
        s.create(
            "web",
            s.image_tags["web"],
            env={},
            mounts={
                content.name: {"bind": WEB_ROOT, "mode": "rw"},
                str(self.tls_dir): {"bind": TLS_DIR, "mode": "rw"},
            },
            ports={
                f"{WEB_PORT}/tcp": ("127.0.0.1", None),
                f"{WEB_PREVIEW_PORT}/tcp": ("127.0.0.1", None),
                f"{TLS_PORT}/tcp": ("127.0.0.1", None),
            },
        )

    def wait_ready(self) -> None:
        self.wait()
        self.backups.append(
            take_backup(self.stack.container("web"), self.stack.run_dir / "web-backup")
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.stack.port('web', WEB_PORT)}"

    @property
    def tls_port(self) -> int:
        return self.stack.port("web", TLS_PORT)

    def health(self, timeout_s: float = 2.0) -> requests.Response:
        """The home page (200 when it serves the site; 503 in maintenance)."""
        return requests.get(self.url + "/", timeout=timeout_s)

    def wait(self, timeout_s: float | None = None) -> None:
        """Until nginx answers its own liveness URL (also while the site is in maintenance)."""
        s = self.stack

        def serving() -> bool:
            s.require_running("web")
            return requests.get(self.url + "/healthz", timeout=1.0).status_code == 200

        wait_for(
            serving,
            what="the web front (nginx) to answer",
            timeout_s=timeout_s or s.options.ready_timeout_s,
            context=s.log_context("web"),
        )
