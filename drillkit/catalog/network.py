"""Network faults and heals: iptables partitions and isolation in a container's namespace, blocked ports, Toxiproxy toxics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drillkit.catalog.processes import _undo_after
from drillkit.core.context import DrillContext
from drillkit.core.registry import FAULTS, RECOVERY, Duration, Service, optional_services
from drillkit.errors import EnvironmentBroken, StepFailed
from drillkit.stack.netns import nsenter

optional_services("proxy", "proxy")


@dataclass
class Partitions:
    """The iptables rules of each partition (a, b), kept so healing removes exactly them."""

    rules: dict[tuple[str, str], list[tuple[str, list[str]]]] = field(default_factory=dict)


@FAULTS("block-port")
def block_port(ctx: DrillContext, service: Service, port: int, duration: Duration) -> str:
    """Refuse every TCP connection to a service's port (iptables REJECT with a reset, inside its
    namespace) for exactly `duration`. The service itself keeps running, so the outage ends
    sharply: the ground truth for the harness's own clock accuracy."""
    c = ctx.stack.container(service)
    rule = [
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        str(port),
        "-m",
        "comment",
        "--comment",
        f"drillkit:{ctx.stack.run_id}",
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]
    proc = nsenter(c, "iptables", "-w", "-I", *rule)
    if proc.returncode != 0:
        raise EnvironmentBroken(f"iptables in {service}: {proc.stderr.strip()}")
    _undo_after(ctx, duration, lambda: nsenter(c, "iptables", "-w", "-D", *rule))
    return f"{service}:{port} refuses connections for {duration:g} s"


def _ip(ctx: DrillContext, service: str) -> str:
    c = ctx.stack.container(service)
    return str(c.attrs["NetworkSettings"]["Networks"][ctx.stack.net.name]["IPAddress"])


def _rules(ctx: DrillContext, a: str, b: str) -> list[tuple[str, list[str]]]:
    tag = ["-m", "comment", "--comment", f"drillkit:{ctx.stack.run_id}"]
    ip_a, ip_b = _ip(ctx, a), _ip(ctx, b)
    return [
        (a, ["INPUT", "-s", ip_b, *tag, "-j", "DROP"]),
        (a, ["OUTPUT", "-d", ip_b, *tag, "-j", "DROP"]),
        (b, ["INPUT", "-s", ip_a, *tag, "-j", "DROP"]),
        (b, ["OUTPUT", "-d", ip_a, *tag, "-j", "DROP"]),
    ]


@FAULTS("partition")
@RECOVERY("partition")
def partition(ctx: DrillContext, a: Service, b: Service) -> str:
    """Cut every packet between two services, both directions (iptables DROP in both namespaces).
    The exact rules are kept, so healing removes them even after an address changed."""
    rules = _rules(ctx, a, b)
    for service, rule in rules:
        proc = nsenter(ctx.stack.container(service), "iptables", "-w", "-I", *rule)
        if proc.returncode != 0:
            raise EnvironmentBroken(f"iptables in {service}: {proc.stderr.strip()}")
    ctx.part(Partitions).rules[(a, b)] = rules
    return f"partitioned {a} <-> {b}"


def take_partition(partitions: Partitions, a: str, b: str) -> list[tuple[str, list[str]]] | None:
    """The rules of the partition between a and b, in either order (a partition cuts both
    directions, so `b, a` names the same one), removed from the record; None when there is none."""
    rules = partitions.rules.pop((a, b), None)
    if rules is None:
        rules = partitions.rules.pop((b, a), None)
    return rules


def _remove_rules(ctx: DrillContext, rules: list[tuple[str, list[str]]]) -> None:
    """Delete each rule from the containers still running (a stopped container's network
    namespace, and its rules, are gone already)."""
    for service, rule in rules:
        c = ctx.stack.container(service)
        if c.status == "running":
            nsenter(c, "iptables", "-w", "-D", *rule)


@RECOVERY("heal-partition")
def heal_partition(ctx: DrillContext, a: Service, b: Service) -> str:
    """Remove the partition's rules (the pair in either order). Fails when no partition between
    the two services exists: a heal that heals nothing is a wrong runbook, not a success."""
    partitions = ctx.part(Partitions)
    rules = take_partition(partitions, a, b)
    if rules is None:
        present = ", ".join(f"{x} <-> {y}" for x, y in partitions.rules) or "none"
        raise StepFailed(
            "heal-partition", f"no partition between {a} and {b} to heal (partitions: {present})"
        )
    _remove_rules(ctx, rules)
    return f"healed {a} <-> {b}"


def _others(ctx: DrillContext, service: str) -> list[str]:
    return [s for s in ctx.stack.services if s != service]


@FAULTS("isolate")
def isolate(ctx: DrillContext, service: Service) -> str:
    """Cut a service off from every other service of the stack (both directions)."""
    for other in _others(ctx, service):
        partition(ctx, service, Service(other))
    return f"{service} isolated from {', '.join(_others(ctx, service))}"


@RECOVERY("heal-isolation")
def heal_isolation(ctx: DrillContext, service: Service) -> str:
    """Remove every partition that cuts the service off (the network comes back). Fails when the
    service is not cut off from anything."""
    partitions = ctx.part(Partitions)
    healed = []
    for other in _others(ctx, service):
        rules = take_partition(partitions, service, other)
        if rules is not None:
            _remove_rules(ctx, rules)
            healed.append(other)
    if not healed:
        raise StepFailed("heal-isolation", f"{service} is not partitioned from any service")
    return f"{service} reconnected to {', '.join(healed)}"


TOXIC_ATTRIBUTES = {
    "latency": ("latency", "jitter"),
    "bandwidth": ("rate",),
    "slow_close": ("delay",),
    "timeout": ("timeout",),
    "reset_peer": ("timeout",),
    "slicer": ("average_size", "size_variation", "delay"),
    "limit_data": ("bytes",),
}


def _proxy(ctx: DrillContext) -> Any:
    if "proxy" not in ctx.stack.kinds:  # drillkit's fault proxy, not a service so named
        raise EnvironmentBroken("this action needs the fault proxy: add `stack: {proxy: true}`")
    from drillkit.stack.services.proxy import PROXY_NAME

    proxy = ctx.stack.toxiproxy().get_proxy(PROXY_NAME)
    if proxy is None:
        raise EnvironmentBroken(f"the fault proxy has no proxy named {PROXY_NAME!r}")
    return proxy


@FAULTS("toxic-add", needs=("proxy",))
@RECOVERY("toxic-add", needs=("proxy",))
def toxic_add(
    ctx: DrillContext,
    type_: str,
    stream: str = "downstream",
    toxicity: float = 1.0,
    name: str = "",
    latency: int = 0,
    jitter: int = 0,
    rate: int = 0,
    delay: int = 0,
    timeout: int = 0,
    average_size: int = 0,
    size_variation: int = 0,
    bytes_: int = 0,
) -> str:
    """Add a toxic to the app -> primary path through the Toxiproxy API (toxiproxy-python).
    Attributes as Toxiproxy names them: latency/jitter/delay/timeout in ms, rate in KB/s."""
    if type_ not in TOXIC_ATTRIBUTES:
        raise StepFailed(
            "toxic-add", f"unknown toxic type {type_!r}: {', '.join(TOXIC_ATTRIBUTES)}"
        )
    values = {
        "latency": latency,
        "jitter": jitter,
        "rate": rate,
        "delay": delay,
        "timeout": timeout,
        "average_size": average_size,
        "size_variation": size_variation,
        "bytes": bytes_,
    }
    attributes = {k: values[k] for k in TOXIC_ATTRIBUTES[type_]}
    toxic_name = name or f"{type_}_{stream}"
    _proxy(ctx).add_toxic(
        name=toxic_name, type=type_, stream=stream, toxicity=toxicity, attributes=attributes
    )
    return f"toxic {toxic_name}: {type_} {stream} {attributes} toxicity {toxicity:g}"


@RECOVERY("toxic-remove", needs=("proxy",))
def toxic_remove(ctx: DrillContext, name: str) -> str:
    """Remove a toxic by name (the runbook 'removes the cause')."""
    proxy = _proxy(ctx)
    if proxy.get_toxic(name) is None:
        raise StepFailed(
            "toxic-remove",
            f"no toxic named {name!r} on the database path (present: {sorted(proxy.toxics())})",
        )
    proxy.destroy_toxic(name)
    return f"toxic {name} removed"


@FAULTS("proxy-down", needs=("proxy",))
def proxy_down(ctx: DrillContext) -> str:
    """Disable the proxy: its listener closes and every connection through it drops."""
    _proxy(ctx).disable()
    return "database path down (proxy disabled)"


@RECOVERY("proxy-up", needs=("proxy",))
def proxy_up(ctx: DrillContext) -> str:
    """Enable the proxy again: the database path is back."""
    _proxy(ctx).enable()
    return "database path up (proxy enabled)"
