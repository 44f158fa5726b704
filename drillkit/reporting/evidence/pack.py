"""Building the pack (atomically), its manifest and pack hash, verifying it, scanning for secrets."""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drillkit.core.results import DrillResult
from drillkit.reporting import (
    clean_secrets,
    iso_wall,
    redact_data,
    redact_result,
    redact_text,
    safe_name,
)
from drillkit.reporting.charts import timeline_png, trend_png
from drillkit.reporting.evidence import render, sign
from drillkit.reporting.evidence.page import _index_html

PACK_FORMAT = "drillkit-evidence-pack/1"
MANIFEST = "manifest.json"
MANIFEST_HASH = "manifest.sha256"
SIGNATURE = sign.SIGNATURE
UNHASHED = (MANIFEST, MANIFEST_HASH, SIGNATURE)
"""The files the manifest cannot list: itself, its hash and its signature."""
TEXT_SUFFIXES = {".html", ".json", ".txt", ".csv", ".yaml", ".yml", ".log", ".md"}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _unique_names(results: Sequence[DrillResult]) -> list[str]:
    """A file-name stem per result, unique within the pack (a repeated scenario gets -2, -3)."""
    names: list[str] = []
    used: set[str] = set()
    for r in results:
        base = safe_name(r.scenario_id)
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}-{n}"
        used.add(name)
        names.append(name)
    return names


def _manifest_files(pack: Path) -> list[str]:
    return sorted(
        p.relative_to(pack).as_posix()
        for p in pack.rglob("*")
        if p.is_file() and p.relative_to(pack).as_posix() not in UNHASHED
    )


def build_pack(
    results: list[DrillResult],
    out_dir: Path,
    operator: str,
    run_id: str,
    environment: dict[str, Any],
    redact: Sequence[str] = (),
    *,
    pdf: bool = True,
    chromium: str | None = None,
    history: Sequence[dict[str, Any]] | None = None,
    stale: Sequence[tuple[str, str]] | None = None,
    replace: bool = False,
    signing_key: Path | None = None,
    roles: dict[str, str] | None = None,
    pack_id: str | None = None,
) -> Path:
    """Write the evidence pack into `out_dir` (which must not exist or be empty, unless
    `replace`: then an existing pack there is swapped out); returns `out_dir`.

    The pack is assembled in a sibling temporary folder and renamed into place, so `out_dir`
    never holds half a pack. `pdf=False` skips the PDF; `history` (rows from load_history) adds a
    trend chart per scenario; `stale` (from stale_scenarios) lists overdue drills;
    `signing_key` (an SSH private key) signs manifest.json into manifest.json.sig; `roles`
    (executor, verifier, approver) fill the sign-off block.
    """
    out_dir = Path(out_dir)
    occupied = out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir()))
    if occupied and not replace:
        raise FileExistsError(f"{out_dir} exists and is not an empty folder")
    secrets = clean_secrets(redact)
    clean = [redact_result(r, secrets) for r in results]
    operator = redact_text(operator, secrets)
    run_id_text = redact_text(run_id, secrets)
    env = redact_data(dict(environment), secrets)
    hist = redact_data(list(history), secrets) if history is not None else None
    stale_rows = redact_data([list(s) for s in stale], secrets) if stale is not None else None
    created = time.time()

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        names = _unique_names(clean)
        files: list[dict[str, str]] = []
        for result, stem in zip(clean, names, strict=True):
            entry = {"timeline": f"timeline-{stem}.png", "json": f"drill-{stem}.json"}
            (build / entry["timeline"]).write_bytes(timeline_png(result))
            data = json.dumps(result.to_json(), indent=1, default=str, ensure_ascii=False)
            (build / entry["json"]).write_text(data + "\n", encoding="utf-8")
            if hist is not None:
                entry["trend"] = f"trend-{stem}.png"
                (build / entry["trend"]).write_bytes(trend_png(hist, result.scenario_id))
            files.append(entry)
        stale_pairs = [(str(a), str(b)) for a, b in stale_rows] if stale_rows is not None else None
        index = _index_html(
            clean,
            files,
            operator,
            run_id_text,
            env,
            created,
            stale_pairs,
            roles=redact_data(dict(roles or {}), secrets),
            signed=signing_key is not None,
        )
        (build / "index.html").write_text(index, encoding="utf-8")

        # Belt and braces: no secret survives in any text file, whatever produced it.
        if secrets:
            for rel in _manifest_files(build):
                path = build / rel
                if path.suffix in TEXT_SUFFIXES:
                    text = path.read_text(encoding="utf-8")
                    cleaned = redact_text(text, secrets)
                    if cleaned != text:
                        path.write_text(cleaned, encoding="utf-8")

        pdf_note: dict[str, str]
        if not pdf:
            pdf_note = {"status": "skipped", "reason": "not requested (pdf=False)"}
        else:
            exe = chromium or render.find_chromium()
            if exe is None:
                pdf_note = {
                    "status": "skipped",
                    "reason": "chromium not installed (apt-get install -y chromium)",
                }
            else:
                try:
                    render.chromium_render(build / "index.html", build / "evidence.pdf", "pdf", exe)
                    pdf_note = {
                        "status": "rendered",
                        "file": "evidence.pdf",
                        "from": "index.html",
                        "renderer": Path(exe).name,
                    }
                except (OSError, RuntimeError) as exc:
                    (build / "evidence.pdf").unlink(missing_ok=True)
                    pdf_note = {
                        "status": "skipped",
                        "reason": redact_text(f"chromium failed: {exc}", secrets),
                    }

        artifacts = {}
        for rel in _manifest_files(build):
            path = build / rel
            artifacts[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        manifest = {
            "format": PACK_FORMAT,
            "run_id": run_id_text,
            "created": iso_wall(created),
            "operator": operator,
            "drills": [
                {
                    "scenario_id": r.scenario_id,
                    "status": r.status,
                    "engine": str(r.environment.get("docker_endpoint", "")),
                    **entry,
                }
                for r, entry in zip(clean, files, strict=True)
            ],
            "pdf": pdf_note,
            "redacted_values": len(secrets),
            "artifacts": artifacts,
        }
        manifest_bytes = (
            json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        ).encode()
        (build / MANIFEST).write_bytes(manifest_bytes)
        digest = hashlib.sha256(manifest_bytes).hexdigest()
        (build / MANIFEST_HASH).write_text(f"{digest}  {MANIFEST}\n")
        if signing_key is not None:
            sign.sign_manifest(build / MANIFEST, Path(signing_key))
        for path in build.iterdir():  # drill records and logs: for the operator's eyes only
            path.chmod(0o600)
        build.chmod(0o700)
        old = None
        if occupied:
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.rename(out_dir, old / out_dir.name)
        elif out_dir.exists():
            out_dir.rmdir()
        os.rename(build, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return out_dir


def pack_hash(pack_dir: Path) -> str:
    """The pack's hash: SHA-256 of its manifest.json."""
    return sha256_file(Path(pack_dir) / MANIFEST)


def verify_pack(
    pack_dir: Path, expected_hash: str | None = None, allowed_signers: Path | None = None
) -> list[str]:
    """One line per problem, each naming the artifact; [] when the pack is intact.

    Lines: "manifest.json changed" (its hash differs from manifest.sha256), "tampered: <file>
    (sha256 differs)", "missing: <file>", "unlisted: <file>", and, given `expected_hash` (the pack
    hash recorded when the pack was issued), "pack hash differs from the recorded one"; given
    `allowed_signers` (an allowed-signers file or a public key), "unsigned" or "signature: ..."
    unless manifest.json.sig is a valid signature of the manifest by one of those keys.
    """
    pack = Path(pack_dir)
    problems: list[str] = []
    manifest_path, hash_path = pack / MANIFEST, pack / MANIFEST_HASH
    if not manifest_path.is_file():
        return [f"missing: {MANIFEST}"]
    actual = sha256_file(manifest_path)
    if not hash_path.is_file():
        problems.append(f"missing: {MANIFEST_HASH}")
    else:
        recorded = hash_path.read_text().split()
        if not recorded or recorded[0].lower() != actual:
            problems.append(f"{MANIFEST} changed")
    if expected_hash is not None and _bare_hash(expected_hash) != actual:
        problems.append("pack hash differs from the recorded one")
    if allowed_signers is not None:
        sig = pack / SIGNATURE
        if not sig.is_file():
            problems.append(f"unsigned: no {SIGNATURE}")
        else:
            problems.extend(sign.verify_signature(manifest_path, sig, Path(allowed_signers)))
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        artifacts = manifest["artifacts"]
        if not isinstance(artifacts, dict):
            raise TypeError("artifacts is not a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        return [*problems, f"{MANIFEST} unreadable: {exc}"]
    root = pack.resolve()
    for rel, entry in sorted(artifacts.items()):
        path = (pack / rel).resolve()
        if not path.is_relative_to(root) or rel in UNHASHED:
            problems.append(f"invalid entry in {MANIFEST}: {rel}")
        elif not path.is_file():
            problems.append(f"missing: {rel}")
        elif not isinstance(entry, dict) or sha256_file(path) != entry.get("sha256"):
            problems.append(f"tampered: {rel} (sha256 differs)")
    for rel in _manifest_files(pack):
        if rel not in artifacts:
            problems.append(f"unlisted: {rel}")
    return problems


def _bare_hash(text: str) -> str:
    """'sha256:ABC…' or 'abc…  manifest.json' -> 'abc…'."""
    words = text.strip().split()
    word = words[0] if words else ""
    return word.removeprefix("sha256:").lower()


def scan_for_secrets(directory: Path, secrets: Sequence[str]) -> list[str]:
    """Files under `directory` (relative paths, sorted) containing any secret, raw or HTML-,
    JSON- or URL-escaped. Binary files are searched byte-wise too."""
    needles: set[bytes] = set()
    for secret in clean_secrets(secrets):
        for form in (
            secret,
            html.escape(secret),
            html.escape(secret, quote=False),
            json.dumps(secret)[1:-1],
            urllib.parse.quote(secret, safe=""),
        ):
            needles.add(form.encode())
    if not needles:
        return []
    base = Path(directory)
    hits = []
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if any(n in data for n in needles):
            hits.append(path.relative_to(base).as_posix())
    return hits
