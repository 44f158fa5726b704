"""drillkit.options: the command line wins over the ini file, the policy file and overrides merge
into one frozen RunConfig, bad values are named, team catalogue modules are listed in order."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from drillkit import options
from drillkit.errors import ValidationError


class FakeConfig:
    """The three things options.py reads from a pytest.Config: options, ini keys, rootpath."""

    def __init__(
        self, root: Path, cli: dict[str, Any] | None = None, ini: dict[str, Any] | None = None
    ):
        self.rootpath = root
        self.stash = pytest.Stash()
        defaults: dict[str, Any] = {
            "drill_" + name.replace("-", "_"): default for name, _, default, _ in options.OPTIONS
        }
        self._ini = {**defaults, "drill_objective": [], options.CATALOG_INI: [], **(ini or {})}
        self._cli = cli or {}

    def getoption(self, name: str) -> Any:
        return self._cli.get(name)

    def getini(self, name: str) -> Any:
        return self._ini[name]


def resolve(tmp_path: Path, cli: dict[str, Any] | None = None, ini: dict[str, Any] | None = None):
    return options.resolve_config(FakeConfig(tmp_path, cli, ini))  # type: ignore[arg-type]


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRILLKIT_SESSION", "s1")
    rc = resolve(tmp_path)
    assert rc.results_dir == tmp_path / "reports" / "runs" / "s1"
    assert rc.run_root == tmp_path / ".run"
    assert (rc.probe_interval_s, rc.k, rc.seed_scale, rc.baseline_backup) == (
        0.1,
        5,
        "small",
        "auto",
    )
    assert rc.stack_file is None and rc.objectives == {} and not rc.keep_on_failure
    with pytest.raises(dataclasses.FrozenInstanceError):
        rc.k = 3  # type: ignore[misc]


def test_command_line_wins_over_ini(tmp_path: Path) -> None:
    rc = resolve(
        tmp_path,
        cli={"--drill-k": "3", "--drill-results": "/abs/out"},
        ini={"drill_k": "7", "drill_seed_scale": "medium", "drill_keep_on_failure": True},
    )
    assert rc.k == 3 and rc.seed_scale == "medium" and rc.keep_on_failure
    assert rc.results_dir.parent == Path("/abs/out/runs")


def test_policy_file_then_overrides(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("objectives:\n  '*': {rto: 30s}\n  db-kill-restart: {rpo: 1s, rto: 20s}\n")
    rc = resolve(
        tmp_path,
        cli={"--drill-objectives": str(policy), "--drill-objective": ["db-kill-restart:rto=9s"]},
    )
    assert rc.objectives == {"*": {"rto_s": 30.0}, "db-kill-restart": {"rpo_s": 1.0, "rto_s": 9.0}}


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        ({"--drill-probe-interval": "1s"}, "must be sub-second"),
        ({"--drill-baseline-backup": "sometimes"}, "expected one of auto, always, never"),
        ({"--drill-objective": ["rto10s"]}, "expected [scenario:]rto|rpo|detection=DURATION"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, cli: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        resolve(tmp_path, cli=cli)
    assert message in str(exc.value)


def test_run_config_is_resolved_once(tmp_path: Path) -> None:
    config = FakeConfig(tmp_path)
    assert options.run_config(config) is options.run_config(config)  # type: ignore[arg-type]


def test_catalog_modules_ini_lines_then_command_line(tmp_path: Path) -> None:
    config = FakeConfig(
        tmp_path,
        cli={"--drill-catalog": ["more.py", " "]},
        ini={options.CATALOG_INI: ["team_catalog.py", "team.pkg.faults"]},
    )
    assert options.catalog_modules(config) == ["team_catalog.py", "team.pkg.faults", "more.py"]  # type: ignore[arg-type]


def test_scenario_paths_select_and_unknown_ids(tmp_path: Path) -> None:
    for sid in ("a", "b"):
        (tmp_path / f"{sid}.yaml").write_text("id: x\n")
    config = FakeConfig(tmp_path, cli={"--drill-scenarios": str(tmp_path), "--drill-select": "b"})
    assert options.scenario_paths(config) == [tmp_path / "b.yaml"]  # type: ignore[arg-type]
    config = FakeConfig(tmp_path, cli={"--drill-scenarios": str(tmp_path), "--drill-select": "c"})
    with pytest.raises(pytest.UsageError, match="unknown scenario"):
        options.scenario_paths(config)  # type: ignore[arg-type]


def test_plugin_still_exports_what_drills_and_tests_import() -> None:
    from drillkit import plugin

    for name in ("assert_verdict", "load_policy", "parse_objective_overrides", "_merge", "SECRETS"):
        assert hasattr(plugin, name), name
