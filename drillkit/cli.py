"""drillkit's command line: build images, validate scenarios, list the catalogue, finish a session
(evidence pack, history, stale-drill warnings), build the HTML report, verify a pack, clean up."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from drillkit.errors import DrillError, ValidationError
from drillkit.paths import ROOT, project_scenarios

REPORTS = ROOT / "reports"
HISTORY = REPORTS / "history" / "drills.jsonl"


def cmd_build(args: argparse.Namespace) -> int:
    from drillkit.stack import images

    t = time.monotonic()
    tags = images.ensure_all()
    for name, tag in tags.items():
        print(f"drillkit: image {name}: {tag}", file=sys.stderr)
    print(f"drillkit: images ready in {time.monotonic() - t:.1f} s", file=sys.stderr)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from drillkit import catalog
    from drillkit.core.scenario import discover, load_scenario

    catalog.load(args.catalog or (), root=Path.cwd())

    problems: list[str] = []
    paths = [
        p
        for arg in (args.paths or [str(project_scenarios())])
        for p in (discover(Path(arg)) if Path(arg).is_dir() else [Path(arg)])
    ]
    for path in paths:
        try:
            load_scenario(path)
        except ValidationError as exc:
            problems.extend(exc.problems)
    for line in problems:
        print(line, file=sys.stderr)
    print(f"{len(paths)} scenario files, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


def cmd_init(args: argparse.Namespace) -> int:
    """Scaffold a team project: stack file, scenarios, pytest.ini, `make drill`, a CI snippet."""
    from importlib import metadata

    from drillkit.scaffold import init_project

    try:
        requirement = f"drillkit=={metadata.version('drillkit')}"
    except metadata.PackageNotFoundError:
        requirement = "drillkit"
    project = Path(args.dir)
    written, notes = init_project(
        project,
        compose=Path(args.compose) if args.compose else None,
        name=args.name,
        force=args.force,
        requirement=requirement,
    )
    for path in written:
        print(f"drillkit: wrote {path}", file=sys.stderr)
    for note in notes:
        print(f"drillkit: {note}", file=sys.stderr)
    print(
        f"drillkit: next: cd {project} && drillkit validate && pytest -v  (or: make drill)",
        file=sys.stderr,
    )
    return 0


KINDS = (
    ("FAULTS", "faults"),
    ("RECOVERY", "recovery steps"),
    ("PROBES", "probes"),
    ("CHECKS", "checks"),
)
"""The registries `drillkit catalog` lists, by attribute of drillkit.core.registry, with a heading."""
_ENTRY_FIELDS = {"name", "kind", "fn", "params", "doc"}


def first_paragraph(doc: str) -> str:
    """The docstring's first paragraph, on one line."""
    return " ".join(doc.strip().split("\n\n", 1)[0].split())


def catalog_listing() -> dict[str, list[dict[str, Any]]]:
    """Every registered entry by kind ('fault', 'recovery', 'probe', 'check'): name, parameters
    (name, type name, required, default), the docstring's first paragraph and the whole docstring;
    any further facts an entry carries (title, ...) under 'facts'."""
    from drillkit.core import registry

    out: dict[str, list[dict[str, Any]]] = {}
    for attr, _ in KINDS:
        reg = getattr(registry, attr, None)
        if reg is None:
            continue
        rows = []
        for name in sorted(reg.entries):
            entry = reg.entries[name]
            params = [
                {
                    "name": p.name,
                    "type": p.type_name,
                    "required": p.required,
                    "default": None if p.required else p.default,
                }
                for p in getattr(entry, "params", {}).values()
            ]
            doc = getattr(entry, "doc", "") or ""
            row: dict[str, Any] = {
                "name": name,
                "params": params,
                "summary": first_paragraph(doc),
                "doc": doc,
            }
            if dataclasses.is_dataclass(entry):
                facts = {
                    f.name: getattr(entry, f.name)
                    for f in dataclasses.fields(entry)
                    if f.name not in _ENTRY_FIELDS and getattr(entry, f.name) not in (None, "", ())
                }
                if facts:
                    row["facts"] = facts
            rows.append(row)
        out[reg.kind] = rows
    return out


def _param_text(param: dict[str, Any]) -> str:
    text = f"{param['name']}: {param['type']}"
    return text + (" (required)" if param["required"] else f" = {param['default']!r}")


def cmd_catalog(args: argparse.Namespace) -> int:
    """List every fault, recovery step, probe and check, with parameters and docstrings."""
    from drillkit import catalog

    catalog.load(args.catalog or (), root=Path.cwd())
    listing = catalog_listing()
    if args.json:
        print(json.dumps(listing, indent=1, default=str))
        return 0
    headings = {attr: heading for attr, heading in KINDS}
    from drillkit.core import registry

    for attr, _ in KINDS:
        reg = getattr(registry, attr, None)
        if reg is None:
            continue
        rows = listing[reg.kind]
        print(f"{headings[attr]} ({len(rows)})")
        for row in rows:
            print(f"  {row['name']}")
            if row["summary"]:
                print(
                    textwrap.fill(
                        row["summary"], 100, initial_indent=" " * 6, subsequent_indent=" " * 6
                    )
                )
            for param in row["params"]:
                print(f"      - {_param_text(param)}")
        print()
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from drillkit.stack import hostfs, reaping

    counts = reaping.reap(None)
    loops = hostfs.reap_loopfs(ROOT / ".run")
    if (ROOT / ".run").exists():
        shutil.rmtree(ROOT / ".run", ignore_errors=True)
    print(
        f"drillkit: removed {counts['containers']} containers, {counts['networks']} networks, "
        f"{counts['volumes']} volumes, {len(loops)} mounts/loop devices"
    )
    cmd_prune_images(args)
    left = reaping.leftovers(None)
    if left:
        print("drillkit: still present: " + ", ".join(left), file=sys.stderr)
        return 1
    return 0


def cmd_prune_images(args: argparse.Namespace) -> int:
    from drillkit.stack import images

    removed = images.prune_stale()
    print(
        f"drillkit: removed {len(removed)} images built from older inputs"
        + (f": {', '.join(removed)}" if removed else "")
    )
    return 0


def cmd_session_start(args: argparse.Namespace) -> int:
    from drillkit.core.runner import new_run_id

    print(time.strftime("%Y%m%d-%H%M%S-") + new_run_id()[:4])
    return 0


def cmd_finish(args: argparse.Namespace) -> int:
    """After a suite: append history, build the evidence pack, warn about stale drills."""
    from drillkit.core.results import load_all
    from drillkit.core.scenario import discover
    from drillkit.reporting import evidence, history

    session = args.session or os.environ.get("DRILLKIT_SESSION")
    if not session:
        print("drillkit: no session given (DRILLKIT_SESSION)", file=sys.stderr)
        return 2
    results_dir = REPORTS / "runs" / session
    results = load_all(results_dir) if results_dir.is_dir() else []
    if not results:
        print(f"drillkit: no drill records in {results_dir}", file=sys.stderr)
        return 0
    recorded = {
        (row.get("run_id"), row.get("scenario_id")) for row in history.load_history(HISTORY)
    }
    for r in results:
        if r.status == "running":  # the harness died mid-drill: the record says so
            r.status = "interrupted"
            r.save(results_dir / f"{r.scenario_id}.json")
        if (r.run_id, r.scenario_id) not in recorded:  # finishing a session twice adds nothing
            history.append_history(HISTORY, r)
    rows = history.load_history(HISTORY)
    ids = [p.stem for p in discover(ROOT / "scenarios")]
    stale = history.stale_scenarios(rows, ids, max_age_days=args.max_age_days)
    pack = evidence.build_pack(
        results,
        REPORTS / "evidence" / session,
        operator=getpass.getuser(),
        run_id=session,
        environment=results[0].environment,
        history=rows,
        stale=stale,
        replace=True,
    )
    print(f"drillkit: evidence pack: {pack} (verify: python -m drillkit.cli verify-pack {pack})")
    for sid, reason in stale:
        print(f"drillkit: WARNING: drill {sid} is stale: {reason}", file=sys.stderr)
    return 0


def cmd_verify_pack(args: argparse.Namespace) -> int:
    from drillkit.reporting import evidence

    problems = evidence.verify_pack(Path(args.pack))
    for line in problems:
        print(line)
    print(
        f"drillkit: pack {args.pack}: {'INTACT' if not problems else f'{len(problems)} problems'}"
    )
    return 1 if problems else 0


def cmd_report(args: argparse.Namespace) -> int:
    """Allure HTML report, offline, with history carried over from the previous report."""
    results = REPORTS / "allure-results"
    out = REPORTS / "allure-report"
    if not results.is_dir():
        print("drillkit: no Allure results yet: run `make drill` first", file=sys.stderr)
        return 1
    allure = _allure_cli()
    if (out / "history").is_dir():
        shutil.copytree(out / "history", results / "history", dirs_exist_ok=True)
    subprocess.run([allure, "generate", "--clean", str(results), "-o", str(out)], check=True)
    print(f"drillkit: report: {out / 'index.html'}")
    return 0


def _allure_cli() -> str:
    tools = ROOT / ".tools"
    local = tools / "node_modules" / ".bin" / "allure"
    if local.exists():
        return str(local)
    if shutil.which("npm") is None:
        raise DrillError("the Allure command line needs npm (Node.js) and Java 17")
    tools.mkdir(exist_ok=True)
    print("drillkit: installing the Allure command line from npm (once) ...", file=sys.stderr)
    subprocess.run(
        [
            "npm",
            "install",
            "--prefix",
            str(tools),
            "--no-audit",
            "--no-fund",
            "allure-commandline@2",
        ],
        check=True,
    )
    return str(local)


_CATALOG_HELP = "also load a team catalogue module: dotted name or .py path (repeatable)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="drillkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build (or find cached) the stack images").set_defaults(
        fn=cmd_build
    )
    v = sub.add_parser("validate", help="validate scenario files")
    v.add_argument(
        "paths",
        nargs="*",
        help="files or folders (default: the project's scenarios/, else the built-in ones)",
    )
    v.add_argument("--catalog", action="append", metavar="MODULE", help=_CATALOG_HELP)
    v.set_defaults(fn=cmd_validate)
    i = sub.add_parser("init", help="scaffold a team project that drills its stack")
    i.add_argument("dir", nargs="?", default=".", help="the project folder (default: here)")
    i.add_argument("--compose", metavar="FILE", help="the team's compose file (recorded)")
    i.add_argument("--name", help="the stack's name (default: from the folder's name)")
    i.add_argument("--force", action="store_true", help="overwrite files that exist")
    i.set_defaults(fn=cmd_init)
    c = sub.add_parser("catalog", help="list every fault, recovery step, probe and check")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.add_argument("--catalog", action="append", metavar="MODULE", help=_CATALOG_HELP)
    c.set_defaults(fn=cmd_catalog)
    sub.add_parser("clean", help="remove everything drillkit left behind").set_defaults(
        fn=cmd_clean
    )
    sub.add_parser("prune-images", help="remove images built from older inputs").set_defaults(
        fn=cmd_prune_images
    )
    sub.add_parser("session-start", help="print a new session id").set_defaults(
        fn=cmd_session_start
    )
    f = sub.add_parser("finish", help="history, evidence pack, stale warnings for a session")
    f.add_argument("--session")
    f.add_argument("--max-age-days", type=float, default=92.0)
    f.set_defaults(fn=cmd_finish)
    vp = sub.add_parser("verify-pack", help="re-check an evidence pack's hashes")
    vp.add_argument("pack")
    vp.set_defaults(fn=cmd_verify_pack)
    sub.add_parser("report", help="build the offline Allure HTML report").set_defaults(
        fn=cmd_report
    )
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except DrillError as exc:
        print(f"drillkit: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
