"""A team's own drill catalogue: one fault, one recovery step and one check, in a file of the team's
repository. Its pytest.ini names it (`drillkit_catalog = team_catalog.py`); no drillkit file
changes. drills/ runs the team's scenarios with drillkit's plugin."""

from __future__ import annotations

import requests

from drillkit.core.context import DrillContext
from drillkit.core.registry import CHECKS, FAULTS, RECOVERY
from drillkit.errors import CheckFailed


@FAULTS("team-stop-app")
def team_stop_app(ctx: DrillContext) -> str:
    """Stop the app's container (SIGTERM, then SIGKILL after a second)."""
    ctx.stack.container("app").stop(timeout=1)
    return "app container stopped"


@RECOVERY("team-start-app")
def team_start_app(ctx: DrillContext) -> str:
    """Start the app's container again and wait until its health endpoint answers 200."""
    ctx.stack.container("app").start()
    ctx.stack.wait_app()
    return "app container started and healthy"


@CHECKS("team-app-answers")
def team_app_answers(ctx: DrillContext, path: str = "/api/health") -> str:
    """The app answers `path` with 200."""
    r = requests.get(ctx.stack.app_url + path, timeout=5)
    if r.status_code != 200:
        raise CheckFailed(f"{path} answered {r.status_code}: {r.text[:200]}")
    return f"{path} answered 200"
