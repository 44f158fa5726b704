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
    from drillkit.core.needs import check_needs
    from drillkit.core.scenario import discover, load_scenario
    from drillkit.stack.spec import load_stack

    catalog.load(args.catalog or (), root=Path.cwd())
    problems: list[str] = []
    spec = None
    if args.stack:
        try:
            spec = load_stack(Path(args.stack))
        except ValidationError as exc:
            problems.extend(exc.problems)
    paths = [
        p
        for arg in (args.paths or [str(project_scenarios())])
        for p in (discover(Path(arg)) if Path(arg).is_dir() else [Path(arg)])
    ]
    for path in paths:
        try:
            twins = Path(args.sabotage) if args.sabotage else None
            scenario = (
                load_scenario(path, spec.services, sabotage_dir=twins)
                if spec
                else load_scenario(path, sabotage_dir=twins)
            )
            if spec is not None:  # what the scenario needs from the stack (core/needs.py)
                check_needs(scenario, spec, path)
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


RUN_DIR_GRACE_S = 600.0
"""A run folder under .run/ with no live run is removed only once it is this old (a run that is
just starting has its folder before its first container)."""


def cmd_clean(args: argparse.Namespace) -> int:
    """Reap, on every engine drillkit knows (the default one, $DRILLKIT_ENGINES, --engines, and
    the engines recorded in .run/ by earlier sessions), what runs whose owner is gone left behind
    (reaping.owner_alive), one line per engine; a run whose owner is alive is left, and said so.
    Then the mounts and folders of older dead runs, and stale images unless --keep-images."""
    from drillkit.errors import EnvironmentBroken
    from drillkit.stack import engine, engines, hostfs, images, reaping

    run_root = ROOT / ".run"
    targets = engines.to_clean(run_root, getattr(args, "engines", None))
    left: list[str] = []
    live: set[str] = set()
    unreachable = 0
    forgotten: list[engines.Endpoint] = []
    for ep in targets:
        if ep.local and not Path(ep.url.removeprefix("unix://")).exists():
            if ep != engines.default_endpoint():  # a local engine that was stopped: nothing left
                print(f"drillkit: engine {ep.shown}: gone (no socket), forgotten")
                forgotten.append(ep)
                continue
        try:
            with engine.on(ep):
                here = reaping.live_runs()
                reaped = reaping.reap_orphans(run_root)
                _runs, refused = reaping.runs_by_owner()
                removed = [] if getattr(args, "keep_images", False) else images.prune_stale()
                still = [x for run in reaped for x in reaping.leftovers(run)]
        except EnvironmentBroken as exc:
            if ep == engines.default_endpoint() and len(targets) == 1:
                raise
            print(f"drillkit: engine {ep.shown}: not reached ({exc})", file=sys.stderr)
            unreachable += 1
            continue
        live |= here
        print(
            f"drillkit: engine {ep.shown}: removed {len(reaped)} runs whose owner is gone"
            + (f" ({', '.join(reaped)})" if reaped else "")
            + f", {len(removed)} images built from older inputs"
        )
        if here:
            print(
                f"drillkit: left {len(here)} runs whose owner is alive: {', '.join(sorted(here))}"
            )
        for label in refused:
            print(
                f"drillkit: WARNING: a resource has an invalid run id label {label!r}: not touched"
            )
        left += [f"{ep.shown}: {name}" for name in still]
    loops = 0
    if run_root.is_dir():
        for d in sorted(run_root.iterdir()):
            if not d.is_dir() or d.is_symlink() or not reaping.valid_run_id(d.name):
                continue
            if d.name in live or time.time() - d.stat().st_mtime < RUN_DIR_GRACE_S:
                continue
            loops += len(hostfs.reap_loopfs(d))
            shutil.rmtree(d, ignore_errors=True)
        known = engines.remembered(run_root)
        if any(e in forgotten for e in known):  # stopped local engines: nothing left to reap
            (run_root / engines.REMEMBERED).unlink(missing_ok=True)
            engines.remember(run_root, [e for e in known if e not in forgotten])
    print(f"drillkit: removed {loops} mounts/loop devices of older run folders")
    if left:
        print("drillkit: still present: " + ", ".join(left), file=sys.stderr)
        return 1
    return 1 if unreachable else 0


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


def _reports_root(args: argparse.Namespace) -> Path:
    """The results folder (`--results` / `--drill-results`, default reports/ of the project)."""
    given = getattr(args, "results", None)
    return Path(given).resolve() if given else REPORTS


def cmd_finish(args: argparse.Namespace) -> int:
    """After a suite: append history, build (and sign) the evidence pack, print its hash and
    record it in the history, warn about overdue drills, notify the webhook.

    Last, the secret scan: no secret the session issued may appear in any file under reports/.

    Exit codes (reporting/ci.py): 0 every drill passed, 1 a breach, 3 only broken drills,
    4 nothing to finish (no session, no record) or bad options, 6 a secret leaked into a file
    under reports/."""
    from drillkit.core.results import load_all
    from drillkit.core.scenario import discover
    from drillkit.reporting import ci, evidence, history, roles
    from drillkit.stack.engines import merged_environment

    root = _reports_root(args)
    session = args.session or os.environ.get("DRILLKIT_SESSION")
    if not session:
        print(
            "drillkit: no session given (--session or DRILLKIT_SESSION); sessions are the "
            f"folders of {root / 'runs'}",
            file=sys.stderr,
        )
        return ci.EXIT_BAD_INPUT
    results_dir = root / "runs" / session
    results = load_all(results_dir) if results_dir.is_dir() else []
    if not results:
        print(
            f"drillkit: no drill record in {results_dir}: nothing ran, or the results went "
            "elsewhere (pass the same --results/--drill-results as the drill run)",
            file=sys.stderr,
        )
        return ci.EXIT_BAD_INPUT
    if args.webhook:
        from drillkit.reporting import notify

        notify.check_url(args.webhook)
    history_file = root / "history" / "drills.jsonl"
    recorded = {
        (row.get("run_id"), row.get("scenario_id")) for row in history.load_history(history_file)
    }
    for r in results:
        if r.status == "running":  # the harness died mid-drill: the record says so
            r.status = "interrupted"
            r.save(results_dir / f"{r.scenario_id}.json")
        if (r.run_id, r.scenario_id) not in recorded:  # finishing a session twice adds nothing
            history.append_history(history_file, r)
    rows = history.load_history(history_file)
    scenarios = Path(args.scenarios) if args.scenarios else project_scenarios()
    ids = [p.stem for p in discover(scenarios)] if scenarios.is_dir() else []
    stale = history.stale_scenarios(rows, ids, max_age_days=args.max_age_days)
    given = {"executor": args.executor, "verifier": args.verifier, "approver": args.approver}
    saved = roles.saved_roles(results_dir)
    team = roles.resolve_roles(given, args.roles, default_user=False)
    signoff = {**saved, **team}
    signoff.setdefault("executor", getpass.getuser())
    key = Path(args.signing_key) if args.signing_key else None
    pack = evidence.build_pack(
        results,
        root / "evidence" / session,
        operator=signoff["executor"],
        run_id=session,
        environment=merged_environment([r.environment for r in results]),
        history=rows,
        stale=stale,
        replace=True,
        signing_key=key,
        roles=signoff,
        pdf=not args.no_pdf,
    )
    digest = evidence.pack_hash(pack)
    history.append_row(
        root / "history" / "packs.jsonl",
        {
            "session": session,
            "pack": str(pack),
            "pack_hash": f"sha256:{digest}",
            "signed": key is not None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "drills": {r.scenario_id: r.status for r in results},
        },
    )
    print(f"drillkit: evidence pack: {pack}")
    print(f"drillkit: pack hash: sha256:{digest}{' (signed)' if key else ''}")
    print(
        f"drillkit: verify: drillkit verify-pack {pack} --expected-hash sha256:{digest}"
        + (" --allowed-signers ALLOWED_SIGNERS" if key else "")
    )
    for sid, reason in stale:
        print(f"drillkit: WARNING: drill {sid} is overdue: {reason}", file=sys.stderr)
    board = _write_dashboard(root, rows, ids, stale)
    print(f"drillkit: history dashboard: {board}")
    if args.webhook:
        _notify_finish(args.webhook, results, stale, args.max_age_days, session)
    failed = sum(1 for r in results if r.status == "failed")
    broken = sum(1 for r in results if r.status in ci.BROKEN_STATUSES)
    if not _secret_scan(root, results_dir):
        return ci.EXIT_SECRET_LEAK
    return ci.session_exit_code(failed, broken, 0, ci.EXIT_BREACH if failed or broken else 0)


def _secret_scan(root: Path, results_dir: Path) -> bool:
    """Every file under `root` (the reports folder: records, Allure results, history, the pack
    and its PDF's text) changed since the session began, searched for every secret the
    session's runs issued, by the digests they recorded. False (and a loud message per file,
    never the secret) when one is found."""
    from drillkit.core import leaks
    from drillkit.reporting import leakscan

    digests = leaks.load(results_dir)
    if not digests:
        print("drillkit: secret scan: the session recorded no secrets; nothing to look for")
        return True
    began = leaks.issued_since(results_dir)
    since = None if began is None else began - leakscan.CLOCK_MARGIN_S
    found, skipped, older = leakscan.scan_tree(root, digests, since)
    for rel in skipped:
        print(
            f"drillkit: WARNING: secret scan: {root / rel} too large, not scanned", file=sys.stderr
        )
    for rel, n in found:
        print(
            f"drillkit: SECRET LEAK: {root / rel} holds {n} occurrence(s) of a secret this "
            "session issued: remove the file and find what wrote it",
            file=sys.stderr,
        )
    if not found:
        unread = f" ({older} files unchanged since the session began: not read)" if older else ""
        print(
            f"drillkit: secret scan: none of the {len(digests)} secrets issued found in {root}"
            + unread
        )
    return not found


def _write_dashboard(
    root: Path, rows: list[dict[str, Any]], ids: list[str], stale: list[tuple[str, str]]
) -> Path:
    from drillkit.reporting import dashboard

    return dashboard.write_dashboard(
        root / "dashboard.html",
        rows,
        ids,
        stale,
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )


def _notify_finish(
    url: str,
    results: list[Any],
    stale: list[tuple[str, str]],
    max_age_days: float,
    session: str,
) -> None:
    """Breaches and overdue drills, one message; a failure to send is a warning, not an error."""
    from drillkit.reporting import ci, notify

    parts = [ci.breach_message(results, session), ci.overdue_message(stale, max_age_days)]
    text = "\n\n".join(p for p in parts if p)
    if not text:
        return
    try:
        notify.post(url, text)
        print(f"drillkit: notified {notify.describe_url(url)}", file=sys.stderr)
    except OSError as exc:
        print(f"drillkit: WARNING: notification not sent: {exc}", file=sys.stderr)


def cmd_verify_pack(args: argparse.Namespace) -> int:
    """Exit 0 intact (and, when asked, matching the recorded hash and signed by an allowed key),
    1 when anything differs, 4 when the pack folder does not exist."""
    from drillkit.reporting import evidence

    pack = Path(args.pack)
    if not pack.is_dir():
        print(f"drillkit: {pack}: no such pack folder", file=sys.stderr)
        return 4
    signers = Path(args.allowed_signers) if args.allowed_signers else None
    problems = evidence.verify_pack(pack, expected_hash=args.expected_hash, allowed_signers=signers)
    for line in problems:
        print(line)
    checked = ["hashes"]
    if args.expected_hash:
        checked.append("recorded pack hash")
    if signers:
        checked.append("signature")
    verdict = "INTACT" if not problems else f"{len(problems)} problems"
    print(f"drillkit: pack {args.pack}: {verdict} (checked: {', '.join(checked)})")
    if not args.expected_hash and not problems:
        print(
            "drillkit: note: without --expected-hash a pack whose manifest was regenerated "
            "still verifies; compare with the hash recorded when it was issued",
            file=sys.stderr,
        )
    return 1 if problems else 0


def cmd_report(args: argparse.Namespace) -> int:
    """Allure HTML report, offline, with history carried over from the previous report (its
    history/ is copied into the results first, so trends span runs)."""
    from drillkit.core.scenario import discover
    from drillkit.reporting import history

    root = _reports_root(args)
    results = root / "allure-results"
    out = root / "allure-report"
    rows = history.load_history(root / "history" / "drills.jsonl")
    ids = [p.stem for p in discover(project_scenarios())]
    board = _write_dashboard(root, rows, ids, history.stale_scenarios(rows, ids))
    print(f"drillkit: history dashboard: {board}")
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
    v.add_argument(
        "--stack",
        metavar="FILE",
        help="a stack file: also refuse scenarios needing what that stack lacks",
    )
    v.add_argument(
        "--sabotage",
        metavar="DIR",
        help="the project's folder of sabotaged twins (as ini drill_sabotage): their "
        "expect: {outcome: fail} is honoured",
    )
    v.set_defaults(fn=cmd_validate)
    i = sub.add_parser("init", help="scaffold a team project that drills its stack")
    i.add_argument("dir", nargs="?", default=".", help="the project folder (default: here)")
    i.add_argument(
        "--compose",
        metavar="FILE",
        help="the team's compose file: the stack file becomes a compose stack with a guessed overlay",
    )
    i.add_argument("--name", help="the stack's name (default: from the folder's name)")
    i.add_argument("--force", action="store_true", help="overwrite files that exist")
    i.set_defaults(fn=cmd_init)
    c = sub.add_parser("catalog", help="list every fault, recovery step, probe and check")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.add_argument("--catalog", action="append", metavar="MODULE", help=_CATALOG_HELP)
    c.set_defaults(fn=cmd_catalog)
    cl = sub.add_parser("clean", help="remove everything drillkit left behind, on every engine")
    cl.add_argument(
        "--engines",
        metavar="LIST",
        help="also these Docker engines (as --drill-engines; $DRILLKIT_ENGINES is read too)",
    )
    cl.add_argument(
        "--keep-images",
        action="store_true",
        help="do not remove images built from older inputs (another checkout may use them)",
    )
    cl.set_defaults(fn=cmd_clean)
    sub.add_parser("prune-images", help="remove images built from older inputs").set_defaults(
        fn=cmd_prune_images
    )
    sub.add_parser("session-start", help="print a new session id").set_defaults(
        fn=cmd_session_start
    )
    f = sub.add_parser("finish", help="history, evidence pack, overdue warnings for a session")
    f.add_argument("--session", help="the session id (default: $DRILLKIT_SESSION)")
    f.add_argument(
        "--results",
        "--drill-results",
        dest="results",
        metavar="DIR",
        help="the results folder the drills wrote to (default: reports/)",
    )
    f.add_argument("--scenarios", metavar="DIR", help="scenario folder for overdue checks")
    f.add_argument("--max-age-days", type=float, default=92.0)
    f.add_argument("--webhook", metavar="URL", help="notify breaches and overdue drills here")
    f.add_argument("--no-pdf", action="store_true", help="skip the PDF (no Chromium run)")
    f.add_argument("--signing-key", metavar="KEY", help="SSH private key to sign the manifest")
    f.add_argument("--executor", help="who ran the drills (sign-off)")
    f.add_argument("--verifier", help="who verified the results (sign-off)")
    f.add_argument("--approver", help="who approves the record (sign-off)")
    f.add_argument("--roles", metavar="FILE", help="YAML with executor, verifier, approver")
    f.set_defaults(fn=cmd_finish)
    vp = sub.add_parser("verify-pack", help="re-check an evidence pack's hashes and signature")
    vp.add_argument("pack")
    vp.add_argument("--expected-hash", metavar="HASH", help="the pack hash recorded at issue")
    vp.add_argument(
        "--allowed-signers",
        "--public-key",
        dest="allowed_signers",
        metavar="FILE",
        help="allowed-signers file (or a public key) whose signature the pack must carry",
    )
    vp.set_defaults(fn=cmd_verify_pack)
    rp = sub.add_parser("report", help="build the offline Allure HTML report")
    rp.add_argument(
        "--results",
        "--drill-results",
        dest="results",
        metavar="DIR",
        help="the results folder (default: reports/)",
    )
    rp.set_defaults(fn=cmd_report)
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except ValidationError as exc:
        for line in exc.problems:
            print(f"drillkit: {line}", file=sys.stderr)
        return 4
    except DrillError as exc:
        print(f"drillkit: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
