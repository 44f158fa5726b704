"""The Kubernetes backend's rendered example (examples/kubernetes/, designed in docs/scale-out.md):
every object parses, belongs to the drill's namespace and run, stays inside the cluster, has
resource limits, and the partition policy really leaves app->db out. With kubectl on PATH the
objects are also decoded into Kubernetes' typed API objects, offline."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "kubernetes"
FAULTS = EXAMPLE / "faults"
RUN_ID = "r0000000"
NAMESPACE = f"dk-{RUN_ID}-partition-app-db"
RUN_LABEL = "io.drillkit.run"
WORKLOADS = {"StatefulSet", "Deployment", "Job", "Pod"}


def _files() -> list[Path]:
    return sorted(EXAMPLE.glob("*.yaml")) + sorted(FAULTS.glob("*.yaml"))


def _objects() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in _files():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                out.append((f"{path.relative_to(EXAMPLE)}:{doc.get('kind')}", doc))
    return out


OBJECTS = _objects()


def _id(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


IDS = [f"{where}/{o.get('metadata', {}).get('name')}" for where, o in OBJECTS]


def _by(kind: str, name: str) -> dict[str, Any]:
    found = [o for _, o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] == "Pod":
        return obj["spec"]
    if obj["kind"] in WORKLOADS:
        return obj["spec"]["template"]["spec"]
    return None


def test_the_example_has_every_object_a_drill_namespace_needs():
    kinds = {(o["kind"], o["metadata"]["name"]) for _, o in OBJECTS}
    for needed in [
        ("Namespace", NAMESPACE),
        ("Secret", "db-secrets"),
        ("Secret", "app-secrets"),
        ("ConfigMap", "app-config"),
        ("StatefulSet", "primary"),
        ("StatefulSet", "replica"),
        ("Deployment", "app"),
        ("Service", "primary"),
        ("Service", "app"),
        ("NetworkPolicy", "default-deny"),
        ("NetworkPolicy", "allow-app-to-db"),
        ("NetworkPolicy", "partition-app-db"),
        ("Job", "drillkit-runner"),
        ("ServiceAccount", "drillkit-runner"),
        ("Role", "drillkit-runner"),
        ("RoleBinding", "drillkit-runner"),
        ("PersistentVolumeClaim", "pgbackrest-repo"),
    ]:
        assert needed in kinds, f"missing {needed[0]}/{needed[1]}"


@pytest.mark.parametrize("obj", [o for _, o in OBJECTS], ids=IDS)
def test_every_object_is_named_labelled_and_in_the_drill_namespace(obj):
    assert obj.get("apiVersion") and obj.get("kind")
    meta = obj.get("metadata") or {}
    assert meta.get("name")
    assert meta.get("labels", {}).get(RUN_LABEL) == RUN_ID
    if obj["kind"] == "Namespace":
        assert meta["name"] == NAMESPACE
    else:
        assert meta.get("namespace") == NAMESPACE
    template = obj.get("spec", {}).get("template")
    if template is not None:
        assert template["metadata"]["labels"][RUN_LABEL] == RUN_ID
    for claim in obj.get("spec", {}).get("volumeClaimTemplates", []):
        assert claim["metadata"]["labels"][RUN_LABEL] == RUN_ID


@pytest.mark.parametrize("obj", [o for _, o in OBJECTS if o["kind"] == "Service"], ids=_id)
def test_services_are_cluster_internal(obj):
    assert obj["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert "externalIPs" not in obj["spec"]
    assert all("nodePort" not in p for p in obj["spec"]["ports"])


@pytest.mark.parametrize("obj", [o for _, o in OBJECTS if _pod_spec(o) is not None], ids=_id)
def test_pods_stay_off_the_host_have_limits_and_pull_nothing(obj):
    spec = _pod_spec(obj)
    assert spec is not None
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), f"{obj['metadata']['name']}: {key}"
    assert not any("hostPath" in v for v in spec.get("volumes", []))
    for c in spec.get("initContainers", []) + spec["containers"]:
        where = f"{obj['metadata']['name']}/{c['name']}"
        limits = c.get("resources", {}).get("limits", {})
        assert {"cpu", "memory"} <= limits.keys(), f"{where}: no cpu/memory limits"
        assert c["image"].startswith("drillkit/"), f"{where}: a locally built image"
        assert c.get("imagePullPolicy") == "Never", f"{where}: images are imported, not pulled"
        sc = c.get("securityContext", {})
        assert not sc.get("privileged"), f"{where}: privileged"
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert "ALL" in sc.get("capabilities", {}).get("drop", []), where


def test_the_runner_may_act_only_in_its_namespace():
    binding = _by("RoleBinding", "drillkit-runner")
    assert binding["roleRef"]["kind"] == "Role"
    assert [s["namespace"] for s in binding["subjects"]] == [NAMESPACE]
    assert not [o for _, o in OBJECTS if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    rules = _by("Role", "drillkit-runner")["rules"]
    assert not any("*" in r.get("verbs", []) + r.get("resources", []) for r in rules)
    assert not any("secrets" in r["resources"] for r in rules), "secrets are mounted, not read"
    job = _by("Job", "drillkit-runner")
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "drillkit-runner"
    assert job["spec"]["backoffLimit"] == 0


def test_every_pvc_has_a_size():
    claims = [o["spec"] for _, o in OBJECTS if o["kind"] == "PersistentVolumeClaim"]
    for _, o in OBJECTS:
        claims += [t["spec"] for t in o.get("spec", {}).get("volumeClaimTemplates", [])]
        spec = _pod_spec(o) or {}
        claims += [
            v["ephemeral"]["volumeClaimTemplate"]["spec"]
            for v in spec.get("volumes", [])
            if "ephemeral" in v
        ]
    assert len(claims) >= 5
    for claim in claims:
        assert claim["resources"]["requests"]["storage"]
    quota = next(o for _, o in OBJECTS if o["kind"] == "ResourceQuota")
    assert quota["spec"]["hard"]["requests.storage"]


def _admits(policy: dict[str, Any], role: str, port: int) -> bool:
    """Whether a policy's ingress rules admit a pod labelled io.drillkit.role=`role` on `port`
    (the subset of NetworkPolicy semantics these manifests use: pod selectors by matchLabels)."""
    for rule in policy["spec"].get("ingress", []):
        ports = [p["port"] for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        peers = rule.get("from")
        if not peers:
            return True
        for peer in peers:
            sel = peer.get("podSelector")
            if sel is not None and "namespaceSelector" not in peer and "ipBlock" not in peer:
                wanted = sel.get("matchLabels", {})
                assert not sel.get("matchExpressions"), "the check handles matchLabels only"
                if all({"io.drillkit.role": role}.get(k) == v for k, v in wanted.items()):
                    return True
    return False


def _selects_db(policy: dict[str, Any]) -> bool:
    labels = policy["spec"]["podSelector"].get("matchLabels", {})
    return labels.get("io.drillkit.role") == "db" or not labels


def test_default_deny_then_app_to_db_allowed():
    deny = _by("NetworkPolicy", "default-deny")
    assert deny["spec"]["podSelector"] == {}
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    assert _admits(_by("NetworkPolicy", "allow-app-to-db"), "app", 5432)


def test_the_partition_policy_denies_app_to_db_and_keeps_the_rest():
    partition = _by("NetworkPolicy", "partition-app-db")
    assert _selects_db(partition) and "Ingress" in partition["spec"]["policyTypes"]
    assert not _admits(partition, "app", 5432)
    assert _admits(partition, "db", 5432), "replication survives the partition"
    assert _admits(partition, "runner", 5432), "the runner's checks survive the partition"
    # during the partition the policies selecting the databases are the applied set minus the
    # allow-app-to-db policy the fault deletes: none of them may admit the app
    applied = [
        o
        for where, o in OBJECTS
        if o["kind"] == "NetworkPolicy" and not where.startswith("faults/")
    ]
    during = [p for p in applied if p["metadata"]["name"] != "allow-app-to-db"] + [partition]
    assert not any(_admits(p, "app", 5432) for p in during if _selects_db(p))
    assert any(_admits(p, "app", 5432) for p in applied if _selects_db(p)), "no-op fault"


# ----- kubectl -------------------------------------------------------------------------------
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")


def _kubectl(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    env = dict(os.environ)
    if not os.environ.get("DRILLKIT_K8S_CLUSTER"):
        # offline: an empty kubeconfig, so nothing is ever sent to a cluster a user has configured
        empty = tmp_path / "kubeconfig"
        empty.write_text("apiVersion: v1\nkind: Config\n", encoding="utf-8")
        env["KUBECONFIG"] = str(empty)
    files = [a for f in (EXAMPLE, FAULTS) for a in ("-f", str(f))]
    return subprocess.run(
        [KUBECTL, *args, *files], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@needs_kubectl
def test_kubectl_decodes_every_object_offline(tmp_path):
    """`kubectl set env --local` decodes each object into its typed API object with no server
    (a wrong field type or an unknown kind fails), then edits the pod templates it finds. Kinds
    without a pod template are decoded and then reported as such: that message is expected."""
    r = _kubectl(
        "set", "env", "--local", "--dry-run=client", "-o", "name", "-e", "DRILLKIT_CHECK=1",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert "unable to decode" not in r.stderr and "is registered" not in r.stderr, r.stderr
    for line in r.stderr.splitlines():
        assert (
            not line.strip() or line.startswith("error: ") or "does not have a pod template" in line
        ), r.stderr
    names = set(r.stdout.split())
    expected = {
        f"{o['kind'].lower()}.{o['apiVersion'].split('/')[0]}/{o['metadata']['name']}"
        if "/" in o["apiVersion"]
        else f"{o['kind'].lower()}/{o['metadata']['name']}"
        for _, o in OBJECTS
        if o["kind"] in WORKLOADS
    }
    assert expected <= names, r.stdout


@needs_kubectl
@pytest.mark.skipif(
    not os.environ.get("DRILLKIT_K8S_CLUSTER"),
    reason="`kubectl apply --dry-run=client` needs an API server even with --validate=false "
    "(discovery, and the live object it would patch); set DRILLKIT_K8S_CLUSTER=1 to run it "
    "against the configured cluster (read-only requests)",
)
def test_kubectl_apply_client_dry_run(tmp_path):
    r = _kubectl("apply", "--dry-run=client", "--validate=false", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
