"""A self-contained report.html: the numbers and the pictures, images embedded as data URIs."""
from __future__ import annotations

import base64
import html

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}.override{color:#fff;background:#c00;padding:.6em;font-weight:bold}.grade{font-size:1.6em;font-weight:bold}.warn{color:#a40;}
img{max-width:100%;margin:4px 0}.note{color:#666;font-size:.9em}"""


TITLES = {"overlay": "Most affected slice", "overlay_2": "Second most affected slice",
          "overlay_3": "Third most affected slice", "montage": "Slices through the lungs (head first)",
          "profile": "Involvement by slice"}


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def render_html(report: dict, pictures: dict[str, bytes]) -> str:
    q = report["quantification"]
    rows = "".join(
        f"<tr><th>{side} lung</th><td>{v['lung_ml']:.1f}</td><td>{v['lesion_ml']:.1f}</td>"
        f"<td>{v['involvement_percent']:.1f}</td></tr>" for side, v in q["lungs"].items())
    overridden = "".join(f'<p class="override">{html.escape(w)}</p>' for w in report["warnings"]
                         if w.startswith("QA OVERRIDDEN"))
    warnings = "".join(f'<li class="warn">{html.escape(w)}</li>' for w in report["warnings"]
                       if not w.startswith("QA OVERRIDDEN"))
    figures = "".join(f"<h3>{html.escape(TITLES.get(name, name))}</h3>{_img(data, name)}"
                      for name, data in pictures.items())
    unit = "mL" if report["input"]["spacing_known"] else "voxels/1000"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>covseg report</title>
<style>{STYLE}</style></head><body>
{overridden}<h1>COVID-19 lung involvement</h1>
<p>{html.escape(report['input']['source'])} &middot; {html.escape(report['input']['format'])}
&middot; {' x '.join(map(str, report['input']['shape_zyx']))} voxels</p>
<p class="grade">{q['severity']['grade']}: {q['involvement_percent']:.1f} % of the lungs
<span class="note">({html.escape(q['severity']['meaning'])})</span></p>
<table><tr><th></th><th>lung ({unit})</th><th>lesion ({unit})</th><th>involved (%)</th></tr>{rows}
<tr><th>both lungs</th><td>{q['lung_ml']:.1f}</td><td>{q['lesion_ml']:.1f}</td>
<td>{q['involvement_percent']:.1f}</td></tr></table>
{'<ul>' + warnings + '</ul>' if warnings else ''}
{figures}
<p class="note">Red: abnormal (ground glass, consolidation, effusion); green: normal lung.
Model: {html.escape(report['model']['name'])}. Research software, not a medical device.</p>
</body></html>"""
