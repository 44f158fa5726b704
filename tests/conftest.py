"""tests/team_project is a team's project (its own pytest.ini, drills and catalogue), run by
tests/integration/test_team_catalog.py in a subprocess: not collected as part of drillkit's tests."""

collect_ignore = ["team_project"]
