"""The cost of distributing: the nightly set's wall time on one engine (one pytest process, drills
one after another) and on three engines (two extra local dockerd processes, pytest-xdist -n 3,
worker gwI on engine I mod 3), as a ratio three/one. On one 2-core machine expect little or no
gain: three stacks share the same two cores, so the figure is what distributing costs, not what
three machines would save.

    python -m bench.engines [--drills db-kill-restart,partition-app-db,disk-full] [--repeat 1]

Needs root (it starts the extra engines; drillkit.stack.local_engines) and a quiet machine: run it
under the drill lock. Writes reports/bench/engines.json and prints a Markdown row. Drills whose
verdict is not a pass are counted and reported (a breach under load is a finding of the run, the
wall time still counts)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from drillkit.paths import ROOT
from drillkit.stack import engines, images, local_engines

OUT = ROOT / "reports" / "bench"


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run_suite(args: list[str], results: Path) -> tuple[float, str, int]:
    """Seconds for one pytest run of the drill suite, its summary line, its exit code."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "drills" / "test_drills.py"),
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--drill-results={results}",
        "--rootdir",
        str(ROOT),
        "-c",
        str(ROOT / "pyproject.toml"),
        *args,
    ]
    env = {k: v for k, v in os.environ.items() if k != "DRILLKIT_SESSION"}
    t = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t
    summary = next(
        (line for line in reversed(proc.stdout.splitlines()) if " in " in line and "=" in line),
        proc.stdout.splitlines()[-1] if proc.stdout else "",
    )
    return wall, summary.strip("= "), proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--drills", default="", help="comma-separated ids (default: -m nightly)")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    select = ["--drill-select", a.drills] if a.drills else ["-m", "nightly"]
    load_before = os.getloadavg()
    tags = [images.base_image(), images.ensure_image("postgres"), images.ensure_image("app")]
    archive = local_engines.image_archive(tags)
    extra: list[local_engines.LocalEngine] = []
    try:
        t = time.monotonic()
        threads = []
        for index in (1, 2):
            eng = local_engines.start(index)
            extra.append(eng)
            threads.append(threading.Thread(target=local_engines.load_images, args=(eng, archive)))
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        setup_s = time.monotonic() - t
        log(f"two extra engines up with images in {setup_s:.1f} s")
        urls = [engines.default_endpoint().url, *(e.url for e in extra)]
        rows: dict[str, list[dict[str, Any]]] = {"one": [], "three": []}
        for i in range(a.repeat):
            with tempfile.TemporaryDirectory(prefix="drillkit-bench-eng-") as tmp:
                wall, summary, rc = run_suite(select, Path(tmp) / "one")
                log(f"one engine, run {i + 1}: {wall:.1f} s ({summary})")
                rows["one"].append({"wall_s": round(wall, 1), "summary": summary, "rc": rc})
                wall, summary, rc = run_suite(
                    [*select, "-n", "3", f"--drill-engines={','.join(urls)}"], Path(tmp) / "three"
                )
                log(f"three engines, run {i + 1}: {wall:.1f} s ({summary})")
                rows["three"].append({"wall_s": round(wall, 1), "summary": summary, "rc": rc})
    finally:
        for eng in (local_engines.engine(1), local_engines.engine(2)):
            local_engines.stop(eng)
    one = min(r["wall_s"] for r in rows["one"])
    three = min(r["wall_s"] for r in rows["three"])
    result = {
        "drills": a.drills or "nightly",
        "cores": os.cpu_count(),
        "engine_setup_s": round(setup_s, 1),
        "one_engine": rows["one"],
        "three_engines": rows["three"],
        "ratio_three_over_one": round(three / one, 2),
        "load_before": load_before,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "engines.json").write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"| {result['drills']} | {one:.1f} s | {three:.1f} s | {result['ratio_three_over_one']} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
