"""Cleanup touches only what is safe (issue 16, class 7): `drillkit clean` leaves a run whose
owner is alive, judges owners only in the pid namespace and boot they were recorded in, refuses
run id labels that are not folder names, and prunes an image only when drillkit built it, no
container uses it, it is not this checkout's, and it is older than a day. The engine is a fake
here (its label filters as Docker's); tests/integration/test_trust_cleanup.py uses the real one."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from drillkit import cli
from drillkit.stack import engine, images, reaping


class Obj:
    def __init__(self, kind: str, labels: dict[str, str], store: list[Obj], **attrs: Any) -> None:
        self.kind, self.store = kind, store
        self.attrs = {"Labels": labels, **attrs}
        self.name = f"{kind}-{labels.get(engine.RUN_LABEL, '?')}"
        store.append(self)

    def remove(self, **kwargs: Any) -> None:
        self.store.remove(self)


class Lister:
    def __init__(self, stopped_hidden: bool = False) -> None:
        self.items: list[Obj] = []
        self.stopped_hidden = stopped_hidden
        """Docker's container listing: without all=True, only running containers."""

    def list(
        self,
        all: bool = False,
        filters: dict | None = None,
        name: str = "",
        sparse: bool = False,
        ignore_removed: bool = False,
    ) -> list[Obj]:
        out = list(self.items)
        if self.stopped_hidden and not all:
            out = [o for o in out if o.attrs.get("running")]
        for flt in (filters or {}).get("label", []):
            key, _, value = flt.partition("=")
            out = [o for o in out if key in o.attrs["Labels"]]
            if value:
                out = [o for o in out if o.attrs["Labels"][key] == value]
        return out


class FakeImages(Lister):
    def __init__(self) -> None:
        super().__init__()
        self.removed: list[str] = []

    def list(self, all: bool = False, filters: dict | None = None, name: str = "") -> list[Obj]:
        return [i for i in self.items if any(t.startswith(name + ":") for t in i.tags)]

    def remove(self, tag: str) -> None:
        self.removed.append(tag)

    def prune(self, filters: dict) -> dict:
        assert filters["until"] == f"{int(images.IMAGE_KEEP_S)}s"  # young dangling ones stay
        return {"ImagesDeleted": []}


class FakeEngine:
    def __init__(self) -> None:
        # the containers of a killed run are stopped: a reaper must list them with all=True
        self._containers, self.networks, self.volumes = Lister(True), Lister(), Lister()
        self.images = FakeImages()

    @property
    def containers(self) -> Lister:
        """As docker.DockerClient.containers: a new collection object on every access."""
        view = Lister(True)
        view.items = self._containers.items
        return view

    def run(self, run: str, owner: dict[str, str]) -> None:
        labels = {engine.LABEL: "true", engine.RUN_LABEL: run, **owner}
        Obj("x", labels, self.containers.items)  # a stopped container only: nothing else

    def runs(self) -> set[str]:
        return {o.attrs["Labels"][engine.RUN_LABEL] for o in self.containers.items}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    f = FakeEngine()
    monkeypatch.setattr(engine, "client", lambda: f)
    return f


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def mine(**override: str) -> dict[str, str]:
    return {**engine.owner_labels(), **override}


@pytest.mark.parametrize("run", ["a1b2c3d4", "it3f2a1b", "team-run_1.2"])
def test_a_run_id_that_names_a_folder_is_valid(run: str) -> None:
    assert reaping.valid_run_id(run)


@pytest.mark.parametrize(
    "run",
    ["../../etc", "..", "a/b", "", ".hidden", "a..b", "x" * 65, "a\x00b", "ａｂｃ", "/etc", "a b"],
)
def test_a_run_id_label_that_is_no_folder_name_is_refused(run: str) -> None:
    assert not reaping.valid_run_id(run)


def test_an_owner_is_judged_in_its_own_pid_namespace_and_boot() -> None:
    now = time.time()
    assert reaping.owner_alive(mine())
    assert not reaping.owner_alive(mine(**{engine.OWNER_LABEL: str(dead_pid())}))
    # a reused pid: alive, but not started when the owner was
    assert not reaping.owner_alive(mine(**{engine.OWNER_START_LABEL: "1"}))
    dead = str(dead_pid())
    for foreign in ({engine.OWNER_PIDNS_LABEL: "4026531"}, {engine.OWNER_BOOT_LABEL: "other"}):
        young = mine(**{engine.OWNER_LABEL: dead, **foreign, engine.CREATED_LABEL: str(int(now))})
        assert reaping.owner_alive(young, now)  # its pid means nothing here: not judged dead
        old = {**young, engine.CREATED_LABEL: str(int(now - reaping.FOREIGN_TTL_S - 1))}
        assert not reaping.owner_alive(old, now)
    # labelled by an older drillkit (no namespace): its pid cannot be placed, so its age rules
    legacy = {engine.OWNER_LABEL: dead, engine.CREATED_LABEL: str(int(now))}
    assert reaping.owner_alive(legacy, now)
    legacy_old = {**legacy, engine.CREATED_LABEL: str(int(now - reaping.FOREIGN_TTL_S - 1))}
    assert not reaping.owner_alive(legacy_old, now)
    assert not reaping.owner_alive({engine.OWNER_LABEL: "not-a-pid"})


def test_an_older_drillkits_run_is_aged_by_the_engines_creation_time(fake: FakeEngine) -> None:
    dead = str(dead_pid())
    Obj(
        "x",
        {engine.LABEL: "true", engine.RUN_LABEL: "old00001", engine.OWNER_LABEL: dead},
        fake._containers.items,
        Created=int(time.time() - 2 * reaping.FOREIGN_TTL_S),
    )
    Obj(
        "x",
        {engine.LABEL: "true", engine.RUN_LABEL: "new00001", engine.OWNER_LABEL: dead},
        fake._containers.items,
        Created=int(time.time()),
    )
    assert reaping.reap_orphans() == ["old00001"]
    assert fake.runs() == {"new00001"}


def test_clean_leaves_a_live_run_and_never_uses_a_bad_label_as_a_path(
    fake: FakeEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = tmp_path / "project"
    run_root = project / ".run"
    victim = tmp_path / "etc"  # what '../../etc' would name from .run/<run>
    victim.mkdir()
    (victim / "passwd").write_text("root:x:0:0\n")
    for run in ("live0001", "dead0001"):
        (run_root / run).mkdir(parents=True)
    monkeypatch.setattr(cli, "ROOT", project)
    monkeypatch.setattr(cli, "RUN_DIR_GRACE_S", 0.0)
    monkeypatch.setattr(images, "prune_stale", lambda: [])
    fake.run("live0001", mine())
    fake.run("dead0001", mine(**{engine.OWNER_LABEL: str(dead_pid())}))
    fake.run("../../etc", mine(**{engine.OWNER_LABEL: str(dead_pid())}))
    assert cli.main(["clean"]) == 0
    assert fake.runs() == {"live0001", "../../etc"}  # the bad label is not reaped by name
    assert (run_root / "live0001").is_dir() and not (run_root / "dead0001").exists()
    assert (victim / "passwd").read_text() == "root:x:0:0\n"
    out = capsys.readouterr().out
    assert "left 1 runs whose owner is alive: live0001" in out
    assert "invalid run id label '../../etc'" in out


def test_a_young_run_folder_is_left_while_its_run_starts(
    fake: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".run" / "new00001").mkdir(parents=True)
    monkeypatch.setattr(cli, "ROOT", tmp_path)
    monkeypatch.setattr(images, "prune_stale", lambda: [])
    assert cli.main(["clean"]) == 0
    assert (tmp_path / ".run" / "new00001").is_dir()


DAY = 24 * 3600.0


def image(tag: str, age_s: float, labelled: bool = True, id_: str = "") -> Obj:
    built = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - age_s))
    labels = {engine.LABEL + ".image": "true"} if labelled else {}
    obj = Obj("image", {}, [], Id=id_ or f"sha256:{tag}", Created=built + ".123456789Z")
    obj.attrs["Config"] = {"Labels": labels}
    obj.tags = [tag]  # type: ignore[attr-defined]
    return obj


def test_an_image_is_pruned_only_when_old_unused_ours_and_not_current(
    fake: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "_local", lambda ref: "sha256:base")
    current = f"drillkit/app:{images.context_hash(images.IMAGES_DIR / 'app', 'sha256:base')}"
    fake.images.items = [
        image(current, 3 * DAY),  # this checkout's build
        image("drillkit/app:old", 3 * DAY),  # stale: goes
        image("drillkit/app:other-checkout", 600),  # another checkout's, just built
        image("drillkit/app:in-use", 3 * DAY, id_="sha256:used"),
        image("drillkit/app:not-ours", 3 * DAY, labelled=False),
    ]
    Obj("c", {}, fake.containers.items, Image="sha256:used")  # a stopped container counts
    assert images.prune_stale(names=("app",)) == ["drillkit/app:old"]
    assert fake.images.removed == ["drillkit/app:old"]


def test_prunable_reads_the_build_time() -> None:
    assert images.image_age_s({"Created": "garbage"}) == 0.0
    old = image("t", 2 * DAY).attrs
    assert images.prunable(old, "t", "current", set())
    assert not images.prunable(old, "t", "current", set(), keep_s=3 * DAY)


class Flaky(Obj):
    """A resource whose first `fails` removals raise (the KeyError a background teardown once
    got from requests iterating os.environ while pytest changed it)."""

    def __init__(self, *args: Any, fails: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fails = fails

    def remove(self, **kwargs: Any) -> None:
        if self.fails:
            self.fails -= 1
            raise KeyError("PYTEST_CURRENT_TEST")
        super().remove(**kwargs)


def test_a_removal_that_fails_once_is_tried_again(fake: FakeEngine) -> None:
    labels = {engine.LABEL: "true", engine.RUN_LABEL: "r1"}
    Flaky("volume", labels, fake.volumes.items, fails=1)
    Obj("network", labels, fake.networks.items)
    assert reaping.reap("r1") == {"containers": 0, "networks": 1, "volumes": 1}
    assert fake.volumes.items == [] and fake.networks.items == []


def test_a_removal_that_keeps_failing_is_said_and_the_rest_is_removed(
    fake: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = {engine.LABEL: "true", engine.RUN_LABEL: "r1"}
    stuck = Flaky("container", labels, fake.containers.items, fails=reaping.REMOVE_TRIES)
    Obj("network", labels, fake.networks.items)
    Obj("volume", labels, fake.volumes.items)
    assert reaping.reap("r1") == {"containers": 0, "networks": 1, "volumes": 1}
    assert fake.containers.items == [stuck]  # left, labelled: make clean gets it
    assert fake.networks.items == [] and fake.volumes.items == []
    assert "could not remove container container-r1: KeyError" in capsys.readouterr().err
