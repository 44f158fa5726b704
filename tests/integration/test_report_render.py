"""What a person sees: the Allure HTML report (generated offline by `make report`'s command) and
the evidence pack, rendered by headless Chromium to PNG and checked not blank, with every drill."""

import shutil
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from drillkit.cli import _allure_cli
from drillkit.reporting.evidence import build_pack, chromium_render, find_chromium

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))
from test_reporting import assert_not_blank, decode_png, make_result  # noqa: E402

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="needs Debian's chromium (make test installs it)"
)

DRILL_TEST = """
import sys
sys.path.insert(0, {unit!r})
from test_reporting import make_result
from drillkit.reporting.allure_report import attach_to_allure

def test_db_kill_restart():
    attach_to_allure(make_result())
"""


def drawn_share(png: bytes) -> float:
    """Share of pixels that differ from the page's background (its most common colour)."""
    pixels = (decode_png(png)[..., :3] * 255).astype("uint8").reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    return float((np.abs(pixels.astype(int) - background).sum(axis=1) > 30).mean())


def screenshot(url: str, out: Path) -> bytes:
    chromium_render(url, out, mode="png", window=(1400, 900), virtual_time_ms=8000)
    return out.read_bytes()


def test_allure_html_report_renders(tmp_path):
    results = tmp_path / "allure-results"
    (tmp_path / "test_drill.py").write_text(DRILL_TEST.format(unit=str(ROOT / "tests" / "unit")))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            str(tmp_path / "test_drill.py"),
            f"--alluredir={results}",
        ],
        check=True,
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    report = tmp_path / "allure-report"
    subprocess.run(
        [_allure_cli(), "generate", "--clean", str(results), "-o", str(report)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    handler = partial(SimpleHTTPRequestHandler, directory=str(report))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        png = screenshot(
            f"http://127.0.0.1:{server.server_port}/index.html", tmp_path / "allure.png"
        )
    finally:
        server.shutdown()
    assert drawn_share(png) > 0.02, "the report page rendered (nearly) empty"
    data = (report / "data" / "behaviors.json").read_text()
    assert "db-kill-restart" in data


def test_evidence_pack_renders_with_every_drill(tmp_path):
    results = [make_result(), make_result()]
    results[1].scenario_id = "disk-full"
    pack = build_pack(results, tmp_path / "pack", operator="ci", run_id="render", environment={})
    out = tmp_path / "pack.png"
    chromium_render(pack / "index.html", out, mode="png")
    assert_not_blank(out.read_bytes())
    html = (pack / "index.html").read_text()
    for r in results:
        assert f"timeline-{r.scenario_id}.png" in html
    assert shutil.which("chromium") or find_chromium()
