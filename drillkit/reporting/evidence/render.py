"""Headless Chromium: find it, print a page to PDF or screenshot it to PNG, offline."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

CHROMIUM_NAMES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
    "headless_shell",
)


def find_chromium() -> str | None:
    """Chromium's path: $DRILLKIT_CHROMIUM, else the first of the usual names on PATH."""
    env = os.environ.get("DRILLKIT_CHROMIUM")
    if env:
        return env if Path(env).exists() else shutil.which(env)
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_render(
    page: Path | str,
    out_path: Path,
    mode: Literal["pdf", "png", "dom"] = "pdf",
    chromium: str | None = None,
    timeout_s: float = 120.0,
    window: tuple[int, int] = (1280, 2400),
    virtual_time_ms: int | None = None,
) -> None:
    """Print `page` (a file, or a URL such as a report served on 127.0.0.1) to a PDF, or
    screenshot it to a PNG, or save its DOM after scripts ran ("dom": HTML text), with headless
    Chromium.

    Offline by construction: no network services, and every host name resolves to nothing but
    127.0.0.1. `virtual_time_ms` lets a scripted page run that long in virtual
    time before the capture (a JavaScript app such as the Allure report draws after load).
    Raises FileNotFoundError without Chromium, RuntimeError when it fails or times out.
    """
    exe = chromium or find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found (apt-get install -y chromium)")
    out_path = out_path.resolve()
    out_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="drillkit-chromium-") as profile:
        args = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--disable-breakpad",
            "--mute-audio",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--user-data-dir={profile}",
        ]
        if mode == "pdf":
            args += [
                f"--print-to-pdf={out_path}",
                "--no-pdf-header-footer",
                "--print-to-pdf-no-header",
            ]
        elif mode == "dom":
            args += ["--dump-dom", f"--window-size={window[0]},{window[1]}"]
        else:
            args += [
                f"--screenshot={out_path}",
                f"--window-size={window[0]},{window[1]}",
                "--hide-scrollbars",
            ]
        if virtual_time_ms is not None:
            args.append(f"--virtual-time-budget={virtual_time_ms}")
        args.append(page if isinstance(page, str) else page.resolve().as_uri())
        env = {**os.environ, "HOME": profile}
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            dom, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise RuntimeError(f"chromium did not finish within {timeout_s:.0f} s") from None
        finally:
            try:  # renderer and zygote helpers must not outlive the call
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if mode == "dom" and proc.returncode == 0 and dom:
        out_path.write_bytes(dom)
    if proc.returncode != 0 or not out_path.exists() or out_path.stat().st_size == 0:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(
            f"chromium exited {proc.returncode} without {out_path.name}: " + " | ".join(tail)
        )
