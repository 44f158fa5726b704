"""Removing what runs left behind: one run's resources, every run's, or the runs whose harness
process is gone. Everything drillkit creates carries its labels (engine.LABEL, engine.RUN_LABEL,
engine.OWNER_LABEL: the harness's pid), so reaping is a label filter."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import docker.errors

from drillkit.stack import engine, hostfs


def reap(run_id: str | None = None) -> dict[str, int]:
    """Remove containers, networks and volumes labelled as drillkit's (one run's, or every
    run's). Containers go in parallel (each removal is a SIGKILL and a wait); then networks and
    volumes, which containers held."""
    c = engine.client()
    flt = {"label": [f"{engine.RUN_LABEL}={run_id}" if run_id else engine.LABEL]}
    counts = {"containers": 0, "networks": 0, "volumes": 0}

    def remove(obj: Any, kind: str, **kwargs: Any) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            obj.remove(**kwargs)
            counts[kind] += 1

    def in_parallel(objs: list[Any], kind: str, **kwargs: Any) -> None:
        threads = [threading.Thread(target=remove, args=(o, kind), kwargs=kwargs) for o in objs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    in_parallel(c.containers.list(all=True, filters=flt), "containers", force=True, v=True)
    in_parallel(c.networks.list(filters=flt), "networks")
    in_parallel(c.volumes.list(filters=flt), "volumes", force=True)
    return counts


def reap_orphans(run_root: Path | None = None) -> list[str]:
    """Reap the runs whose harness process is gone (killed mid-drill); live runs are left alone.
    With `run_root`, also unmount and detach the loop filesystems those runs left under it."""
    c = engine.client()
    runs: dict[str, str] = {}
    for lister in (c.containers.list, c.networks.list, c.volumes.list):
        kwargs = {"all": True} if lister == c.containers.list else {}
        for obj in lister(filters={"label": [engine.LABEL]}, **kwargs):
            labels = obj.attrs.get("Labels") or obj.attrs.get("Config", {}).get("Labels") or {}
            run = labels.get(engine.RUN_LABEL)
            if run:
                runs[run] = labels.get(engine.OWNER_LABEL, "")
    reaped = []
    for run, owner in runs.items():
        if owner.isdigit() and _alive(int(owner)):
            continue
        reap(run)
        if run_root is not None:
            hostfs.reap_loopfs(run_root / run)
        reaped.append(run)
    return reaped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftovers(run_id: str | None = None) -> list[str]:
    """Names of labelled resources still present (empty after a clean teardown)."""
    c = engine.client()
    flt = {"label": [f"{engine.RUN_LABEL}={run_id}" if run_id else engine.LABEL]}
    names = [f"container {x.name}" for x in c.containers.list(all=True, filters=flt)]
    names += [f"network {x.name}" for x in c.networks.list(filters=flt)]
    names += [f"volume {x.name}" for x in c.volumes.list(filters=flt)]
    return names
