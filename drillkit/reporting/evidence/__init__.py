"""The evidence pack: a self-contained, hashed folder an auditor can read offline and verify.

Contents:
- index.html: run id, dates, operator, environment; a summary of every drill against its
  objectives; per drill its timeline chart, an incident report in the headings of runbook 000's
  Incident Report Template, the checklist and the breaches; the control mapping table.
  Inline CSS; charts are separate PNG files referenced relatively (so the manifest hashes them).
- timeline-<scenario>.png, drill-<scenario>.json (the full DrillResult) per drill; with a history,
  trend-<scenario>.png as well.
- evidence.pdf: index.html printed by headless Chromium, when Chromium is installed.
- manifest.json.sig (when signed): an SSH signature of manifest.json (sign.py).
- manifest.json: SHA-256 and size of every other file; manifest.sha256: the SHA-256 of
  manifest.json in `sha256sum` format. That one hash (the pack hash) pins the whole pack: record
  it elsewhere (ticket, history, signed mail) and `verify_pack(dir, expected_hash=...)` proves the
  pack unchanged.

Secrets: results are secret-free by construction, but `build_pack(redact=[...])` also replaces each
given string with "[redacted]" in everything it renders (before the charts are drawn) and in every
text file it writes; `scan_for_secrets` checks a folder afterwards.

Modules: html (CSS, cells, tables, `standalone_html`), page (the index page and the incident
report), audit (the auditor's sections), sign (ssh-keygen -Y sign/verify), render (headless Chromium: `find_chromium`, `chromium_render`), pack (`build_pack`,
`verify_pack`, `pack_hash`, `scan_for_secrets`).
"""

from __future__ import annotations

from drillkit.reporting import REDACTED
from drillkit.reporting.evidence.html import (
    CSS,
    WITHHELD,
    checklist_table,
    measured_cells,
    objectives_table,
    standalone_html,
    summary_table,
)
from drillkit.reporting.evidence.pack import (
    MANIFEST,
    MANIFEST_HASH,
    PACK_FORMAT,
    TEXT_SUFFIXES,
    build_pack,
    pack_hash,
    scan_for_secrets,
    sha256_file,
    verify_pack,
)
from drillkit.reporting.evidence.page import incident_report
from drillkit.reporting.evidence.render import CHROMIUM_NAMES, chromium_render, find_chromium

__all__ = [
    "CHROMIUM_NAMES",
    "CSS",
    "MANIFEST",
    "MANIFEST_HASH",
    "PACK_FORMAT",
    "REDACTED",
    "TEXT_SUFFIXES",
    "WITHHELD",
    "build_pack",
    "checklist_table",
    "chromium_render",
    "find_chromium",
    "incident_report",
    "measured_cells",
    "objectives_table",
    "pack_hash",
    "scan_for_secrets",
    "sha256_file",
    "standalone_html",
    "summary_table",
    "verify_pack",
]
