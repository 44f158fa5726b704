"""Removing what runs left behind: one run's resources, every run's, or the runs whose harness
process is gone. Everything drillkit creates carries its labels (engine.LABEL, engine.RUN_LABEL,
and who owns it: engine.owner_labels(), the harness's pid with its pid namespace, boot and start
time), so reaping is a label filter. A run id label names a folder only once valid_run_id()
accepts it."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker.errors

from drillkit.stack import engine, hostfs


def reap(run_id: str | None = None) -> dict[str, int]:
    """Remove containers, networks and volumes labelled as drillkit's (one run's, or every
    run's). Containers go in parallel (each removal is a SIGKILL and a wait); then networks and
    volumes, which containers held. A removal that fails is tried once more; what still fails
    is said on stderr and left, labelled (`make clean`, or the next session's reaping, removes
    it), and the rest is removed all the same."""
    c = engine.client()
    flt = {"label": [f"{engine.RUN_LABEL}={run_id}" if run_id else engine.LABEL]}
    counts = {"containers": 0, "networks": 0, "volumes": 0}

    def remove(obj: Any, kind: str, **kwargs: Any) -> None:
        for attempt in range(1, REMOVE_TRIES + 1):
            try:
                with contextlib.suppress(docker.errors.NotFound):
                    obj.remove(**kwargs)
                    counts[kind] += 1
                return
            except Exception as exc:  # left labelled; never stops the other removals
                if attempt == REMOVE_TRIES:
                    name = getattr(obj, "name", None) or getattr(obj, "id", "?")
                    print(
                        f"drillkit: could not remove {kind[:-1]} {name}: "
                        f"{type(exc).__name__}: {exc}; it stays labelled (make clean removes it)",
                        file=sys.stderr,
                    )

    def in_parallel(objs: list[Any], kind: str, **kwargs: Any) -> None:
        threads = [threading.Thread(target=remove, args=(o, kind), kwargs=kwargs) for o in objs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    in_parallel(
        c.containers.list(all=True, filters=flt, ignore_removed=True),
        "containers",
        force=True,
        v=True,
    )
    in_parallel(c.networks.list(filters=flt), "networks")
    in_parallel(c.volumes.list(filters=flt), "volumes", force=True)
    return counts


REMOVE_TRIES = 2
"""Tries per removal. A background teardown's removal once failed on a KeyError from requests'
proxy lookup, which iterates os.environ while pytest's main thread deletes PYTEST_CURRENT_TEST
from it: a race, not a verdict on the engine."""


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""What a run id label may be before it names a folder (new_run_id() makes 8 hex digits)."""
FOREIGN_TTL_S = 24 * 3600.0
"""A run owned from another pid namespace or boot (a harness in a container, or before a
reboot) cannot be checked: it is left alone until it is this old."""


def valid_run_id(run: str) -> bool:
    """A run id usable as a folder name: no separator, no '..', nothing but [A-Za-z0-9_.-]."""
    return bool(RUN_ID.fullmatch(run)) and ".." not in run


def owner_alive(labels: dict[str, str], now: float | None = None) -> bool:
    """Whether the harness that created a resource may still be running. Its pid is checked
    only in the pid namespace and boot it was recorded in (and must have started when it did);
    an owner recorded elsewhere counts as alive until FOREIGN_TTL_S after creation. Resources
    labelled before the namespace was recorded (an older drillkit) cannot be placed either: they
    are foreign too, judged by their age (CREATED_LABEL, or the engine's creation time)."""
    owner = labels.get(engine.OWNER_LABEL, "")
    if not owner.isdigit():
        return False
    ns, boot = labels.get(engine.OWNER_PIDNS_LABEL), labels.get(engine.OWNER_BOOT_LABEL)
    if ns != engine.pid_namespace() or boot != engine.boot_id() or not ns or not boot:
        created = labels.get(engine.CREATED_LABEL, "")
        age = (time.time() if now is None else now) - float(created) if created.isdigit() else 0
        return age < FOREIGN_TTL_S
    if not _alive(int(owner)):
        return False
    started = labels.get(engine.OWNER_START_LABEL)
    return not started or engine.start_ticks(int(owner)) in ("", started)


def runs_by_owner() -> tuple[dict[str, dict[str, str]], list[str]]:
    """Every labelled run (run id -> the owner labels of one of its resources), and the run id
    labels refused as invalid (never used as a path, never reaped by name)."""
    c = engine.client()
    runs: dict[str, dict[str, str]] = {}
    refused: list[str] = []
    listings = (
        # stopped ones too; sparse: the listing's labels, no inspect of each (a container removed
        # meanwhile by its own teardown is no error)
        c.containers.list(all=True, sparse=True, filters={"label": [engine.LABEL]}),
        c.networks.list(filters={"label": [engine.LABEL]}),
        c.volumes.list(filters={"label": [engine.LABEL]}),
    )
    for listing in listings:
        for obj in listing:
            labels = obj.attrs.get("Labels") or obj.attrs.get("Config", {}).get("Labels") or {}
            run = labels.get(engine.RUN_LABEL)
            if not run:
                continue
            if not valid_run_id(run):
                refused.append(run[:80])
                continue
            if engine.CREATED_LABEL not in labels:  # an older drillkit's: the engine's time
                labels = {**labels, engine.CREATED_LABEL: str(int(_created(obj.attrs)))}
            runs.setdefault(run, labels)
    return runs, sorted(set(refused))


def _created(attrs: dict[str, Any]) -> float:
    """When the engine created a container (unix seconds in a listing), network or volume (ISO
    8601); now when it does not say (so the resource counts as young)."""
    raw = attrs.get("Created", attrs.get("CreatedAt"))
    if isinstance(raw, int | float):
        return float(raw)
    try:
        stamp = datetime.strptime(str(raw)[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return time.time()
    return stamp.replace(tzinfo=UTC).timestamp()


def reap_orphans(run_root: Path | None = None, only: set[str] | None = None) -> list[str]:
    """Reap the runs whose harness process is gone (killed mid-drill, or finished and kept its
    stack for debugging); a run whose owner is alive (or cannot be judged: owner_alive) is left
    alone. With `run_root`, also unmount and detach the loop filesystems those runs left under
    it and remove their folders. `only`: consider just these run ids."""
    runs, _refused = runs_by_owner()
    reaped = []
    for run, labels in runs.items():
        if (only is not None and run not in only) or owner_alive(labels):
            continue
        reap(run)
        if run_root is not None:
            hostfs.reap_loopfs(run_root / run)
            shutil.rmtree(run_root / run, ignore_errors=True)
        reaped.append(run)
    return reaped


def live_runs() -> set[str]:
    """The run ids whose owner is alive (what `drillkit clean` must leave)."""
    runs, _ = runs_by_owner()
    return {run for run, labels in runs.items() if owner_alive(labels)}


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
