"""A test-only pytest plugin (-p leak_secrets_plugin): at the end of the drill session it writes
the secrets the session's drills issued to $LEAKTEST_SECRETS_OUT (a private temporary file
outside reports/), so the test can search reports/ for them independently of the digests
`drillkit finish` scans by."""

import os
from pathlib import Path

import drillkit.plugin


def pytest_sessionfinish(session):
    out = os.environ.get("LEAKTEST_SECRETS_OUT")
    if out:
        seen = session.config.stash.get(drillkit.plugin._SECRETS_SEEN, [])
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(seen))
        assert Path(out).stat().st_size > 0 or not seen
