# drillkit's pytest plugin is registered through the package's pytest11 entry point
# (pyproject.toml); nothing else is needed here. Teams drilling their own stack override the
# `drill_run_config` or `drill_bus` fixtures in their own conftest.py.
