"""A self-contained report.html: the key numbers, a slice viewer and the pictures, all inline.

One file that opens offline and can be e-mailed: images are data URIs, the viewer's slices a
JSON blob (covseg.report.viewer), its script vanilla JS (covseg.report.viewer_ui); no URL is
fetched.
"""
from __future__ import annotations

import base64
import html

import numpy as np

from covseg.report import viewer_ui
from covseg.report.density_html import density_section
from covseg.report.model import Quantification, Report
from covseg.report.viewer import data_script, viewer_data

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1240px;padding:0 20px;color:#222}
table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #ccc;padding:5px 12px;text-align:right;font-size:16px}
th{background:#f3f3f3}.override{color:#fff;background:#c00;padding:.6em;font-weight:bold}.warn{color:#a40;}
.key{display:flex;flex-wrap:wrap;gap:28px;align-items:center;margin:.4em 0 1em}
.key .grade{font-size:40px;font-weight:bold;padding:4px 16px;border-radius:6px;background:#263238;color:#fff}
.key .big{font-size:30px;font-weight:bold}.key .cap{font-size:14px;color:#555;display:block}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:16px}
.figs figure{margin:0}.figs img{width:100%;height:auto;image-rendering:auto}
.figs figure.wide{grid-column:1/-1}.figs figure.wide img{max-width:900px}
.note{color:#666;font-size:.9em}h1{margin-bottom:.2em}"""


TITLES = {"overlay": "Most affected slice", "overlay_2": "Second most affected slice",
          "overlay_3": "Third most affected slice", "montage": "Slices through the lungs (head first)",
          "profile": "Involvement by slice"}
WIDE = ("montage", "profile")


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


# where the lungs came from (covseg.lungs.METHODS, or a mask the user gave), in a reader's words
LUNG_SOURCES = {"hu": "HU thresholds", "model": "covseg's learned lung model",
                "masked": "the picture's own (it came lung-masked)",
                "intensity": "the picture's dark regions", "given": "the lung mask given"}


def _amount(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _key_numbers(q: Quantification, unit: str) -> str:
    """Grade, involvement and volumes at a size read from across the desk, then per lung."""
    rows = "".join(
        f"<tr><th>{side} lung</th><td>{v.lung_ml:.1f}</td><td>{v.lesion_ml:.1f}</td>"
        f"<td>{v.involvement_percent:.1f}</td></tr>" for side, v in q.sides().items())
    return f"""<div class="key"><span class="grade">{html.escape(q.severity.grade)}</span>
<span><span class="big">{q.involvement_percent:.1f} %</span>
<span class="cap">of the lungs involved</span></span>
<span><span class="big">{_amount(q.lung_ml)} {unit}</span><span class="cap">lungs</span></span>
<span><span class="big">{_amount(q.lesion_ml)} {unit}</span><span class="cap">lesions</span></span>
<span class="note">{html.escape(q.severity.meaning)}</span></div>
<table><tr><th></th><th>lung ({unit})</th><th>lesion ({unit})</th><th>involved (%)</th></tr>{rows}
<tr><th>both lungs</th><td>{q.lung_ml:.1f}</td><td>{q.lesion_ml:.1f}</td>
<td>{q.involvement_percent:.1f}</td></tr></table>"""


def _viewer(scan, labels: np.ndarray, q: Quantification) -> str:
    data = viewer_data(scan, labels, q.per_slice_involvement_percent)
    return (f"<h2>All slices</h2>{viewer_ui.markup(data['hu'], data['presets'], data['slices'])}"
            f"{data_script(data)}<script>{viewer_ui.SCRIPT}</script>")


def render_html(report: Report, pictures: dict[str, bytes], scan=None,
                labels: np.ndarray | None = None) -> str:
    """The page; with the scan and its labels (and pictures asked for) it holds the viewer."""
    q = report.quantification
    overridden = "".join(f'<p class="override">{html.escape(w)}</p>' for w in report.warnings
                         if w.startswith("QA OVERRIDDEN"))
    warnings = "".join(f'<li class="warn">{html.escape(w)}</li>' for w in report.warnings
                       if not w.startswith("QA OVERRIDDEN"))
    figures = "".join(f'<figure class="{"wide" if name in WIDE else ""}"><h3>'
                      f'{html.escape(TITLES.get(name, name))}</h3>{_img(data, name)}</figure>'
                      for name, data in pictures.items())
    unit = report.unit
    viewer = _viewer(scan, labels, q) if scan is not None and labels is not None and pictures else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>covseg report</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>{STYLE}{viewer_ui.STYLE}</style></head><body>
{overridden}<h1>COVID-19 lung involvement</h1>
<p class="note">{html.escape(report.input.source)} &middot; {html.escape(report.input.format)}
&middot; {' x '.join(map(str, report.input.shape_zyx))} voxels</p>
{_key_numbers(q, unit)}
{'<ul>' + warnings + '</ul>' if warnings else ''}
{viewer}
{density_section(report.density)}
<h2>Pictures</h2><div class="figs">{figures}</div>
<p class="note">Red: abnormal (ground glass, consolidation, effusion); green: normal lung.
Model: {html.escape(report.model.name)}. Lungs: {html.escape(LUNG_SOURCES.get(
    report.preprocessing.lungs, report.preprocessing.lungs))}. Research software, not a medical
device.</p>
</body></html>"""
