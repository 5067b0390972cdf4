"""Inline SVG charts rendered on the server (no JavaScript chart library). Pure functions: data in, markup
out; every label is escaped."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

PALETTE = ("#2f6fdf", "#e07b24", "#2a9d5b", "#b8399b", "#7b61c9", "#c2412d", "#3a9fb0", "#8a8a2b")


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return _num(value) if value != int(value) else str(int(value))


def bar_chart(
    points: Sequence[tuple[str, float]], *, title: str, width: int = 720, height: int = 180
) -> Markup:
    """One bar per point (label, value), a y axis with the maximum, the first and last labels under the
    axis and a tooltip (``<title>``) on every bar."""
    left, bottom, top = 44, 22, 10
    plot_w, plot_h = width - left - 6, height - bottom - top
    top_value = max((v for _, v in points), default=0.0) or 1.0
    step = plot_w / max(len(points), 1)
    bars = []
    for n, (label, value) in enumerate(points):
        h = plot_h * value / top_value
        x, y = left + n * step, top + plot_h - h
        bars.append(
            f'<rect x="{_num(x + step * 0.1)}" y="{_num(y)}" width="{_num(max(step * 0.8, 1))}" '
            f'height="{_num(h)}" fill="{PALETTE[0]}"><title>{escape(label)}: {_short(value)}</title></rect>'
        )
    axis_y = top + plot_h
    labels = ""
    if points:
        labels = (
            f'<text x="{left}" y="{height - 6}" class="tick">{escape(points[0][0])}</text>'
            f'<text x="{width - 6}" y="{height - 6}" class="tick" text-anchor="end">'
            f"{escape(points[-1][0])}</text>"
        )
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<line x1="{left}" y1="{axis_y}" x2="{width - 6}" y2="{axis_y}" class="axis"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{axis_y}" class="axis"/>'
        f'<text x="{left - 4}" y="{top + 8}" class="tick" text-anchor="end">{_short(top_value)}</text>'
        f'<text x="{left - 4}" y="{axis_y}" class="tick" text-anchor="end">0</text>'
        + "".join(bars)
        + labels
        + "</svg>"
    )


def grouped_bars(
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    width: int = 720,
    height: int = 220,
) -> Markup:
    """Grouped bars: one group per entry of ``groups`` (e.g. a metric), one bar per series (e.g. a method),
    values in ``[0, max]``; a legend on top."""
    left, bottom, top = 44, 24, 26
    plot_w, plot_h = width - left - 6, height - bottom - top
    top_value = max((v for _, values in series for v in values), default=0.0) or 1.0
    group_w = plot_w / max(len(groups), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    parts = []
    for s, (name, values) in enumerate(series):
        colour = PALETTE[s % len(PALETTE)]
        parts.append(
            f'<rect x="{left + s * 110}" y="6" width="10" height="10" fill="{colour}"/>'
            f'<text x="{left + s * 110 + 14}" y="15" class="tick">{escape(name)}</text>'
        )
        for g, value in enumerate(values):
            h = plot_h * value / top_value
            x = left + g * group_w + group_w * 0.1 + s * bar_w
            parts.append(
                f'<rect x="{_num(x)}" y="{_num(top + plot_h - h)}" width="{_num(bar_w)}" height="{_num(h)}" '
                f'fill="{colour}"><title>{escape(name)} {escape(groups[g])}: {value:.4f}</title></rect>'
            )
    for g, group in enumerate(groups):
        x = left + g * group_w + group_w / 2
        parts.append(
            f'<text x="{_num(x)}" y="{height - 6}" class="tick" text-anchor="middle">{escape(group)}</text>'
        )
    axis_y = top + plot_h
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<line x1="{left}" y1="{axis_y}" x2="{width - 6}" y2="{axis_y}" class="axis"/>'
        f'<text x="{left - 4}" y="{top + 8}" class="tick" text-anchor="end">{top_value:.3g}</text>'
        + "".join(parts)
        + "</svg>"
    )
