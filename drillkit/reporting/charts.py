"""PNG charts of a drill: the timeline of one run, and the RTO/RPO trend of a scenario over runs.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend switch), so it is
safe to call from a pytest session or a thread. Every chart has content even when the drill had
no failures, no lost writes or no measurement at all (a drill that errored).
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from drillkit.core.measure import Sample
from drillkit.core.results import DrillResult
from drillkit.reporting import fmt_secs, t_detected, t_fault, t_recovered, verdict_word

OK = "#2e7d32"
FAIL = "#c62828"
ALTERED = "#ef6c00"
WRITES = "#1565c0"
MUTED = "#9e9e9e"
MARKER_COLOURS = {
    "fault": FAIL,
    "detected": "#f9a825",
    "recovery": "#6a1b9a",
    "recovered": OK,
}
PROBE_ORDER = ("availability", "journey")
WIDTH_IN, HEIGHT_IN, DPI = 12.0, 5.0, 100


def _new_figure(bottom: float = 0.09) -> Figure:
    """Fixed margins (constrained layout would double the drawing time)."""
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    fig.subplots_adjust(left=0.085, right=0.99, top=0.92, bottom=bottom, hspace=0.12)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def _origin(result: DrillResult) -> float:
    """x = 0: the first sample, else the steady marker, else the earliest known time."""
    if result.samples:
        return min(s.t for s in result.samples)
    if "steady" in result.markers:
        return result.markers["steady"]
    times = [*result.markers.values(), *(s.t_start for s in result.steps)]
    times += [w.t_ack for w in result.acked]
    return min(times) if times else result.t0_monotonic


def _title(result: DrillResult) -> str:
    obj, m = result.objectives, result.measurement
    head = f"{result.scenario_id} — {verdict_word(result)}"
    if m is None:
        return (
            f"{head} — not measured (objectives RTO {fmt_secs(obj.rto_s)}, "
            f"RPO {fmt_secs(obj.rpo_s)})"
        )
    rto = fmt_secs(m.rto_s, "never recovered")
    lost = m.lost + m.altered
    return (
        f"{head} — RTO {rto} (objective {fmt_secs(obj.rto_s)}) · "
        f"RPO {fmt_secs(m.rpo_s)} (objective {fmt_secs(obj.rpo_s)}) · "
        f"{lost} of {m.acked} acknowledged writes lost"
    )


def _interval(samples: Sequence[Sample]) -> float:
    """The probe interval: the median gap between consecutive completions (0.1 s if unknown)."""
    gaps = sorted(b.t - a.t for a, b in itertools.pairwise(samples) if b.t > a.t)
    return gaps[len(gaps) // 2] if gaps else 0.1


def _segments(samples: Sequence[Sample], origin: float) -> tuple[list[Any], list[Any]]:
    """(ok, failed) runs as (x, width) pairs: each sample covers the gap since the previous one."""
    ok: list[tuple[float, float]] = []
    bad: list[tuple[float, float]] = []
    step = _interval(samples)
    prev_t = samples[0].t - step
    run_start, run_ok = prev_t, samples[0].ok
    for s in samples:
        if s.ok != run_ok:
            (ok if run_ok else bad).append((run_start - origin, prev_t - run_start))
            run_start, run_ok = prev_t, s.ok
        prev_t = s.t
    (ok if run_ok else bad).append((run_start - origin, prev_t - run_start))
    return ok, bad


def _probes(result: DrillResult) -> dict[str, list[Sample]]:
    by_probe: dict[str, list[Sample]] = {name: [] for name in PROBE_ORDER}
    for s in result.samples:
        by_probe.setdefault(s.probe, []).append(s)
    for samples in by_probe.values():
        samples.sort(key=lambda s: s.t)
    return by_probe


def _draw_lanes(ax: Axes, result: DrillResult, origin: float) -> None:
    by_probe = _probes(result)
    names = list(by_probe)
    labels = []
    for row, name in enumerate(names):
        y = len(names) - 1 - row
        samples = by_probe[name]
        failed = sum(1 for s in samples if not s.ok)
        labels.append(f"{name}\n({failed} failed)" if samples else f"{name}\n(no samples)")
        if not samples:
            ax.broken_barh(
                [(0, 1)],
                (y - 0.3, 0.6),
                facecolors="none",
                edgecolors=MUTED,
                hatch="//",
                transform=ax.get_yaxis_transform(),
            )
            continue
        ok, bad = _segments(samples, origin)
        ax.broken_barh(ok, (y - 0.35, 0.7), facecolors=OK)
        if bad:
            ax.broken_barh(bad, (y - 0.35, 0.7), facecolors=FAIL)
    ax.set_yticks(range(len(names) - 1, -1, -1), labels, fontsize=8)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_ylabel("probe up/down", fontsize=8)
    ax.tick_params(axis="x", labelbottom=False)


def _draw_latency(ax: Axes, result: DrillResult, origin: float) -> None:
    by_probe = _probes(result)
    drawn = False
    for name, colour, width in (("availability", MUTED, 0.8), ("journey", WRITES, 1.3)):
        samples = by_probe.get(name) or []
        good = [s for s in samples if s.ok]
        bad = [s for s in samples if not s.ok]
        if good:
            ax.plot(
                [s.t - origin for s in good],
                [s.latency_s * 1000 for s in good],
                color=colour,
                linewidth=width,
                label=f"{name} latency",
            )
            drawn = True
        if bad and name == "journey":
            ax.plot(
                [s.t - origin for s in bad],
                [s.latency_s * 1000 for s in bad],
                linestyle="none",
                marker="x",
                markersize=4,
                color=FAIL,
                label="journey failed (at its latency or timeout)",
            )
            drawn = True
    if not drawn:
        ax.text(
            0.5,
            0.5,
            "no probe samples recorded",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color=MUTED,
            fontsize=11,
        )
    else:
        ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
        ax.set_ylim(bottom=0)
    ax.set_ylabel("latency (ms)", fontsize=8)
    ax.tick_params(axis="x", labelbottom=False)


def _draw_writes(ax: Axes, result: DrillResult, origin: float) -> None:
    acks = [w.t_ack - origin for w in result.acked]
    if acks:
        first, last = math.floor(min(acks)), math.floor(max(acks))
        counts = [0] * (last - first + 1)
        for x in acks:
            counts[math.floor(x) - first] += 1
        ax.bar(
            [first + i + 0.5 for i in range(len(counts))],
            counts,
            width=0.9,
            color=WRITES,
            alpha=0.55,
            label=f"acknowledged writes/s ({len(acks)} total)",
        )
    else:
        ax.text(
            0.5,
            0.5,
            "no acknowledged writes recorded",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color=MUTED,
            fontsize=11,
        )
    marks = ((result.lost, FAIL, "lost"), (result.altered, ALTERED, "altered"))
    for writes, colour, label in marks:
        if writes:
            ax.vlines(
                [w.t_ack - origin for w in writes],
                0,
                0.3,
                colors=colour,
                linewidth=1.6,
                transform=ax.get_xaxis_transform(),
                label=f"{label} acknowledged writes ({len(writes)})",
            )
    if acks or result.lost or result.altered:
        ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    ax.set_ylabel("writes / s", fontsize=8)
    ax.set_xlabel("seconds since the first probe sample", fontsize=8)


def _markers(result: DrillResult) -> list[tuple[float, str, str]]:
    """(t, label, colour) for fault, detected, each recovery step start, recovered."""
    out: list[tuple[float, str, str]] = []
    tf = t_fault(result)
    if tf is not None:
        out.append((tf, "fault", MARKER_COLOURS["fault"]))
    td = t_detected(result)
    if td is not None:
        mttd = f" ({fmt_secs(td - tf)})" if tf is not None else ""
        out.append((td, f"detected{mttd}", MARKER_COLOURS["detected"]))
    recovery = [s for s in result.steps if s.kind == "recovery"]
    for i, step in enumerate(recovery, 1):
        name = step.name if len(step.name) <= 26 else step.name[:25] + "…"
        out.append((step.t_start, f"R{i} {name}", MARKER_COLOURS["recovery"]))
    tr = t_recovered(result)
    if tr is not None:
        rto = f" ({fmt_secs(tr - tf)})" if tf is not None else ""
        out.append((tr, f"recovered{rto}", MARKER_COLOURS["recovered"]))
    return sorted(out, key=lambda m: m[0])


def _draw_markers(axes: Iterable[Axes], label_ax: Axes, result: DrillResult, origin: float) -> None:
    marks = _markers(result)
    for ax in axes:
        for t, _, colour in marks:
            ax.axvline(t - origin, color=colour, linestyle="--", linewidth=1.1, alpha=0.9)
    heights = (0.93, 0.76, 0.59, 0.42)
    for i, (t, label, colour) in enumerate(marks):
        label_ax.text(
            t - origin,
            heights[i % len(heights)],
            f" {label}",
            color=colour,
            fontsize=7.5,
            ha="left",
            va="top",
            transform=label_ax.get_xaxis_transform(),
            bbox={
                "boxstyle": "round,pad=0.15",
                "facecolor": "white",
                "edgecolor": colour,
                "alpha": 0.85,
                "linewidth": 0.6,
            },
        )


def _x_span(result: DrillResult, origin: float) -> tuple[float, float]:
    times = [s.t for s in result.samples] + [w.t_ack for w in result.acked]
    times += [t for t, _, _ in _markers(result)]
    times += [s.t_end for s in result.steps if s.t_end is not None]
    if not times:
        return 0.0, 1.0
    lo, hi = min(times) - origin, max(times) - origin
    pad = max(0.02 * (hi - lo), 0.1)
    return min(0.0, lo) - pad, hi + pad


def timeline_png(result: DrillResult) -> bytes:
    """The drill's timeline, 1200x500 px: probe lanes, journey latency, writes/s, lost writes,
    and vertical markers for fault, detection, each recovery step and recovery."""
    fig = _new_figure()
    lanes, latency, writes = fig.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": [1.0, 1.4, 1.4]}
    )
    origin = _origin(result)
    _draw_lanes(lanes, result, origin)
    _draw_latency(latency, result, origin)
    _draw_writes(writes, result, origin)
    _draw_markers((lanes, latency, writes), latency, result, origin)
    writes.set_xlim(*_x_span(result, origin))
    for ax in (lanes, latency, writes):
        ax.grid(axis="x", color="#e0e0e0", linewidth=0.6)
        ax.tick_params(labelsize=8)
    colour = OK if result.status == "passed" else FAIL if result.status == "failed" else ALTERED
    fig.suptitle(_title(result), fontsize=10.5, color=colour, fontweight="bold")
    if result.error:
        first = result.error.strip().splitlines()[0] if result.error.strip() else result.error
        text = first if len(first) <= 160 else first[:159] + "…"
        latency.text(
            0.01,
            0.05,
            f"drill error: {text}",
            transform=latency.transAxes,
            color=FAIL,
            fontsize=8,
            ha="left",
            va="bottom",
        )
    return _png(fig)


def _parse_when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def trend_png(history_rows: Sequence[dict[str, Any]], scenario_id: str) -> bytes:
    """RTO and RPO of each run of one scenario over time, against its objectives (1200x500 px).

    Points are coloured by verdict; a run that never recovered is a red triangle at the top of
    the RTO panel, a run with nothing measured (an error) a grey cross on the axis.
    """
    rows = []
    for row in history_rows:
        when = _parse_when(row.get("wall_end"))
        if row.get("scenario_id") == scenario_id and when is not None:
            rows.append((when, row))
    rows.sort(key=lambda r: r[0])
    fig = _new_figure(bottom=0.14)
    ax_rto, ax_rpo = fig.subplots(2, 1, sharex=True)
    fig.suptitle(
        f"{scenario_id} — RTO and RPO per run ({len(rows)} runs)", fontsize=10.5, fontweight="bold"
    )
    if not rows:
        for ax in (ax_rto, ax_rpo):
            ax.text(
                0.5,
                0.5,
                f"no recorded runs of {scenario_id}",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color=MUTED,
                fontsize=11,
            )
        ax_rto.set_ylabel("RTO (s)", fontsize=8)
        ax_rpo.set_ylabel("RPO (s)", fontsize=8)
        return _png(fig)
    for ax, key, label in ((ax_rto, "rto_s", "RTO"), (ax_rpo, "rpo_s", "RPO")):
        xs = [when for when, _ in rows]
        objective = [(row.get("objectives") or {}).get(key) for _, row in rows]
        if any(v is not None for v in objective):
            ax.step(
                xs,
                [math.nan if v is None else v for v in objective],
                where="post",
                color=MUTED,
                linestyle="--",
                linewidth=1.2,
                label=f"{label} objective",
            )
        values = [row.get(key) for _, row in rows]
        known = [v for v in values if isinstance(v, int | float)]
        top = max(known + [v for v in objective if v is not None] + [1e-3]) * 1.15
        ax.plot(
            [x for x, v in zip(xs, values, strict=True) if v is not None],
            [v for v in values if v is not None],
            color=WRITES,
            linewidth=0.8,
            alpha=0.6,
        )
        seen: set[str] = set()
        for when, row in rows:
            value, status = row.get(key), row.get("status")
            if value is None and key == "rto_s" and status in ("passed", "failed"):
                style, y, legend = (
                    {"marker": "^", "color": FAIL, "markersize": 8},
                    top,
                    "never recovered",
                )
            elif value is None:
                style, y, legend = (
                    {"marker": "x", "color": MUTED, "markersize": 7},
                    0.0,
                    "not measured",
                )
            else:
                colour = {"passed": OK, "failed": FAIL}.get(str(status), ALTERED)
                style, y, legend = (
                    {"marker": "o", "color": colour, "markersize": 6},
                    value,
                    str(status),
                )
            ax.plot(
                [when],
                [y],
                linestyle="none",
                clip_on=False,
                label=None if legend in seen else legend,
                **style,
            )
            seen.add(legend)
        ax.set_ylim(0, top * 1.08)
        ax.set_ylabel(f"{label} (s)", fontsize=8)
        ax.grid(color="#e0e0e0", linewidth=0.6)
        ax.tick_params(labelsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=7, framealpha=0.8)
    ax_rpo.tick_params(axis="x", labelrotation=15)
    return _png(fig)


__all__ = ["timeline_png", "trend_png"]
