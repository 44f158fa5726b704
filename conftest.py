# drillkit's pytest plugin is registered through the package's pytest11 entry point
# (pyproject.toml), and it registers the drill fixtures (drillkit.fixtures: drill_stack, traffic,
# fault, runbook, verdict); nothing else is needed here. Teams drilling their own stack override
# the `drill_run_config`, `drill_bus` or `drill_*` factory fixtures in their own conftest.py.
