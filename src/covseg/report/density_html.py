"""The lung-density part of report.html (HU scans): bands per lung, mean density, a histogram.

The histogram is an inline SVG drawn from report.json's own numbers, so the page stays one file.
"""
from __future__ import annotations

import html

from covseg.report.model import DensityInfo

BAND_TITLES = {"hyperinflated": "hyperinflated (< -950 HU)", "well_aerated": "well aerated (-950..-700)",
               "poorly_aerated": "poorly aerated, ground glass (-700..-100)",
               "non_aerated": "non aerated, consolidation (-100..+100)", "dense": "dense (> +100)"}
BAND_COLOURS = {"hyperinflated": "#9ecae1", "well_aerated": "#3182bd", "poorly_aerated": "#fdae6b",
                "non_aerated": "#e6550d", "dense": "#636363"}


def _histogram_svg(density: DensityInfo, width: int = 600, height: int = 160) -> str:
    counts = density.histogram["counts"]
    first, step = density.histogram["first_hu"], 8
    peak = max(counts) or 1
    bar = width / len(counts)
    rects = []
    for k, n in enumerate(counts):
        hu = first + k * step
        band = next(name for name, (lo, hi) in density.band_edges_hu.items()
                    if (lo is None or hu >= lo) and (hi is None or hu < hi))
        h = (height - 20) * n / peak
        rects.append(f'<rect x="{k * bar:.1f}" y="{height - 20 - h:.1f}" width="{bar:.1f}" '
                     f'height="{h:.1f}" fill="{BAND_COLOURS[band]}"/>')
    ticks = "".join(f'<text x="{(hu - first) / step * bar:.0f}" y="{height - 4}" font-size="11">{hu}</text>'
                    for hu in (-1000, -700, -100, 100) if hu >= first)
    return (f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="lung HU histogram" '
            f'style="width:100%;max-width:{width}px">{"".join(rects)}{ticks}</svg>')


def density_section(density: DensityInfo | None) -> str:
    """HTML for the density figures, or a note that pictures have none."""
    if density is None:
        return "<h2>Lung density</h2><p class=\"note\">No HU in a picture: density is not measured.</p>"
    rows = "".join(
        f"<tr><th>{html.escape(BAND_TITLES.get(name, name))}</th><td>{band.ml:.1f}</td>"
        f"<td>{band.percent:.1f}</td><td>{density.lungs['right'][name].percent:.1f}</td>"
        f"<td>{density.lungs['left'][name].percent:.1f}</td><td>{band.called_abnormal_ml:.1f}</td></tr>"
        for name, band in density.bands.items())
    mean = "n/a" if density.mean_lung_hu is None else f"{density.mean_lung_hu:.0f} HU"
    return f"""<h2>Lung density</h2>
<p>Mean lung density <b>{mean}</b>; well-aerated lung <b>{density.bands['well_aerated'].percent:.1f} %</b>
<span class="note">(under about 71 % predicted ICU admission or death in Colombi et al.,
Radiology 2020)</span></p>
<table><tr><th>band</th><th>mL</th><th>% of lungs</th><th>% right</th><th>% left</th>
<th>called abnormal (mL)</th></tr>
{rows}</table>{_histogram_svg(density)}"""
