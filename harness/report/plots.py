"""The HTML report's figures: matplotlib (Agg backend, no display) rendered to inline SVG.

Every function takes the data :mod:`harness.report.data` computed and returns an ``<svg>``
element as text; the caller decides what to show when there is no data (no empty axes here).
matplotlib is imported on first use, so importing the report package stays cheap.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from harness.report.data import ROLES, Band, CensorshipPoint, EventMark, SendPoint

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: send mark colour by outcome (see harness.report.data.OUTCOMES)
OUTCOME_COLOURS = {"delivered": "#2a9d8f", "acknowledged": "#457b9d", "indeterminate": "#e9a23b",
                   "failed": "#e76f51", "lost": "#9b2226"}
ROLE_COLOURS = {"guard": "#264653", "relay": "#8ab17d", "destination": "#e9c46a"}
#: fault band colours, given to the actions in order of appearance
BAND_PALETTE = ("#f4a261", "#b5838d", "#6d597a", "#90be6d", "#577590", "#f94144", "#43aa8b")
SENDS_LANE = "sends"
#: the RDF block matplotlib puts in every SVG (namespaces, creator): not needed inline
METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)
WIDTH = 10.0  # inches (at 100 dpi: 1000 px wide in the page)
#: the plots shown two per row
HALF = 5.2


@contextmanager
def figure(height: float, width: float = HALF) -> Iterator[tuple[Figure, Axes]]:
    """A figure (and its axes) in the report's style; closed when done."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9, "axes.grid": True,
                                "axes.spines.top": False, "axes.spines.right": False,
                                "grid.alpha": 0.3, "svg.hashsalt": None}):
        fig, ax = plt.subplots(figsize=(width, height), dpi=100, layout="constrained")
        try:
            yield fig, ax
        finally:
            plt.close(fig)


def to_svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return METADATA.sub("", text[text.index("<svg"):])


def band_colours(bands: Sequence[Band]) -> dict[str, str]:
    actions = list(dict.fromkeys(b.action for b in bands))
    return {a: BAND_PALETTE[i % len(BAND_PALETTE)] for i, a in enumerate(actions)}


def shade_faults(ax: Axes, bands: Sequence[Band], t_end: float) -> None:
    """Shade the time of every fault (whatever its lane) behind a time-series plot."""
    colours = band_colours(bands)
    seen: set[str] = set()
    spans = {(b.action, b.start, b.end): b for b in bands}  # a fault on many lanes: one span
    for b in spans.values():
        label = None if b.action in seen else f"fault: {b.action}"
        seen.add(b.action)
        ax.axvspan(b.start, t_end if b.end is None else b.end, color=colours[b.action],
                   alpha=0.18, lw=0, label=label)


def timeline_svg(lanes: Sequence[str], bands: Sequence[Band], marks: Sequence[EventMark],
                 points: Sequence[SendPoint], t_end: float) -> str:
    """Faults as bands per lane (node or link), churn events as triangles (▲ taken out, ▼ back),
    every send as a mark on the ``sends`` lane coloured by outcome."""
    rows = [SENDS_LANE, *lanes]
    y = {lane: i for i, lane in enumerate(rows)}
    colours = band_colours(bands)
    with figure(max(2.2, 0.32 * len(rows) + 1.2), WIDTH) as (fig, ax):
        for b in bands:
            width = (t_end if b.end is None else b.end) - b.start
            ax.broken_barh([(b.start, max(width, t_end / 500))], (y[b.lane] - 0.38, 0.76),
                           facecolors=colours[b.action], alpha=0.85 if b.applied else 0.3,
                           edgecolor="#333" if b.applied else "#c00", linewidth=0.4)
            if width > t_end / 25:
                ax.text(b.start + width / 2, y[b.lane], b.action, ha="center", va="center",
                        fontsize=7, color="#111")
        for m in marks:
            ax.plot(m.t, y[m.lane], marker="^" if m.phase == "apply" else "v", color="#111",
                    markersize=6, linestyle="none")
        for outcome, colour in OUTCOME_COLOURS.items():
            xs = [p.t for p in points if p.outcome == outcome]
            if xs:
                ax.plot(xs, [y[SENDS_LANE]] * len(xs), marker="|", markersize=16,
                        markeredgewidth=2, linestyle="none", color=colour,
                        label=f"{outcome} ({len(xs)})")
        ax.set_yticks(range(len(rows)), rows)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlim(0, t_end)
        ax.set_xlabel("seconds since the start of the run")
        if points:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=5, frameon=False)
        return to_svg(fig)


def latency_svg(send: Sequence[tuple[float, float]], deliver: Sequence[tuple[float, float]],
                bands: Sequence[Band], t_end: float) -> str:
    with figure(3.2) as (fig, ax):
        shade_faults(ax, bands, t_end)
        if send:
            ax.plot(*zip(*send, strict=True), "o-", ms=3, lw=0.6, label="send",
                    color="#457b9d")
        if deliver:
            ax.plot(*zip(*deliver, strict=True), "s", ms=3, label="delivery",
                    color="#2a9d8f")
        ax.set_xlim(0, t_end)
        ax.set_xlabel("send start (s)")
        ax.set_ylabel("latency (ms)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=3, fontsize=7,
                  frameon=False)
        return to_svg(fig)


def cdf_svg(curves: Mapping[str, Sequence[tuple[float, float]]]) -> str:
    with figure(3.2) as (fig, ax):
        for label, pts in curves.items():
            if pts:
                xs, ys = zip(*[(pts[0][0], 0.0), *pts], strict=True)
                ax.step(xs, ys, where="post", label=f"{label} (n={len(pts)})")
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("fraction ≤ latency")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower right", fontsize=8)
        return to_svg(fig)


def sent_delivered_svg(sent: Sequence[tuple[float, int]], got: Sequence[tuple[float, int]],
                       bands: Sequence[Band], t_end: float) -> str:
    with figure(3.2) as (fig, ax):
        shade_faults(ax, bands, t_end)
        for label, pts, colour in (("sent", sent, "#457b9d"), ("delivered", got, "#2a9d8f")):
            if pts:
                xs, ys = zip(*[(0.0, 0), *pts, (t_end, pts[-1][1])], strict=True)
                ax.step(xs, ys, where="post", label=f"{label} ({pts[-1][1]})", color=colour)
        ax.set_xlim(0, t_end)
        ax.set_xlabel("seconds since the start of the run")
        ax.set_ylabel("messages")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=3, fontsize=7,
                  frameon=False)
        return to_svg(fig)


def roles_svg(counts: dict[str, dict[str, int]]) -> str:
    nodes = list(counts)
    with figure(3.2) as (fig, ax):
        bottom = [0] * len(nodes)
        for role in ROLES:
            values = [counts[n][role] for n in nodes]
            ax.bar(nodes, values, bottom=bottom, label=role, color=ROLE_COLOURS[role])
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_ylabel("requests")
        ax.legend(loc="upper right", fontsize=8)
        return to_svg(fig)


def censorship_svg(points: Sequence[CensorshipPoint]) -> str:
    with figure(3.2) as (fig, ax):
        xs = [p.fraction for p in points]
        ax.plot(xs, [p.rate for p in points], "o-", color="#9b2226")
        for p in points:
            ax.annotate(f"{p.delivered}/{p.sends}", (p.fraction, p.rate),
                        textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        ax.set_xlabel("fraction of nodes censoring during the send")
        ax.set_ylabel("delivery rate")
        ax.set_ylim(-0.05, 1.15)
        ax.set_xlim(-0.05, max([0.5, *xs]) + 0.05)
        return to_svg(fig)


__all__ = ["OUTCOME_COLOURS", "cdf_svg", "censorship_svg", "latency_svg", "roles_svg",
           "sent_delivered_svg", "timeline_svg"]
