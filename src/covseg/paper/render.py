"""docs/paper.md from the gathered rows: each table with the paper's figures beside ours, and a
conclusion in words that the measured numbers decide (the rules are stated on the page)."""
from __future__ import annotations

import statistics

from covseg.paper import published
from covseg.paper.tables import Row

TOL = 0.01  # Dice within this of another counts as a match (one seed a run: no finer claim)
METRICS = ("sensitivity", "specificity", "accuracy", "dice")
CLASSES = ("abnormal", "normal")
PENDING = "pending"


def f4(value: float | None) -> str:
    return PENDING if value is None else f"{value:.4f}"


def _paper(table: str, network: str, cls: str) -> str:
    value = published.paper_dice(table, network, cls)
    return "not transcribed" if value is None else f"{value:.3f}"


def metric_table(table: str, rows: list[Row]) -> str:
    """Per class: sensitivity, specificity, accuracy, Dice per slice and pooled; the paper's Dice."""
    head = ("| network | params (M) | class | " + " | ".join(f"{m} per slice" for m in METRICS) +
            " | " + " | ".join(f"{m} pooled" for m in METRICS) + " | paper Dice | train s |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    scored = [r.scores["slices"] for r in rows if r.scores is not None]
    for r in rows:
        for cls in CLASSES:
            cells = [f4(r.value(cls, m, "per_slice")) for m in METRICS]
            cells += [f4(r.value(cls, m, "pooled")) for m in METRICS]
            # a run still training has a log but no wall time of the run yet
            train = PENDING if r.scores is None or r.train_s is None else f"{r.train_s:,.0f}"
            lines.append(f"| {r.label} | {r.params_m:.2f} | {cls} | " + " | ".join(cells) +
                         f" | {_paper(table, r.cfg.model, cls)} | {train} |")
    if scored:
        lines.append(f"\nScored on {max(scored)} test slices; train s: training wall time of the run.")
    return "\n".join(lines)


def size_verdict(table: str, rows: list[Row], anam: str = "anamnet") -> str:
    """The paper's claim for a comparison table, judged on abnormal Dice per slice."""
    done = [r for r in rows if r.scores is not None]
    mine = next((r for r in done if r.label == anam), None)
    if mine is None or len(done) < len(rows):
        return f"Pending: {len(done)} of {len(rows)} runs scored."
    ranked = sorted(done, key=lambda r: -r.value())
    larger = [r for r in done if r.params_m > mine.params_m]
    beaten_by = [r for r in larger if r.value() > mine.value() + TOL]
    text = (f"Anam-Net ranks {ranked.index(mine) + 1} of {len(done)} by abnormal Dice per slice "
            f"({mine.value():.4f}; best {ranked[0].label} {ranked[0].value():.4f}).")
    paper = published.paper_dice(table, anam, "abnormal")
    if paper is not None:
        text += f" Against the paper's {paper:.3f}: {mine.value() - paper:+.4f} (protocol differs, see top)."
    if beaten_by:
        names = ", ".join(f"{r.label} {r.value():.4f}" for r in beaten_by)
        return (f"{text} **Disagree** with \"{published.CLAIMS[table]}\": larger networks beat it "
                f"by more than {TOL}: {names}.")
    return (f"{text} **Agree** with \"{published.CLAIMS[table]}\": no larger network beats it by "
            f"more than {TOL} ({len(larger)} larger networks).")


def convergence_table(rows: list[Row]) -> str:
    """How far from convergence: the loss at the start, at 2/3 and at the end; train vs test Dice."""
    lines = ["| run | steps | loss first record | loss at 2/3 | loss last | change over the last third "
             "| train abnormal Dice (crops, last record) | test abnormal Dice per slice |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if not r.log:
            lines.append(f"| {r.label} | {PENDING} | | | | | | |")
            continue
        first, mid, last = r.log[0], r.log[(2 * len(r.log)) // 3 - 1], r.log[-1]
        change = (last["loss"] - mid["loss"]) / mid["loss"] if mid["loss"] else 0.0
        lines.append(f"| {r.label} | {last['step']} | {first['loss']:.4f} | {mid['loss']:.4f} | "
                     f"{last['loss']:.4f} | {100 * change:+.1f} % | {last['train_dice_abnormal']:.4f} | "
                     f"{f4(r.value())} |")
    return "\n".join(lines)


def rotation_table(rotation: dict[str, list[Row]] | None) -> tuple[str, list[Row]]:
    """Per network: abnormal Dice on each held-out fold and the mean; the means as pseudo-rows."""
    if rotation is None:
        return "Pending: chosen once every Table VIII run is scored.", []
    lines = ["| network | F1 | F2 | F3 | mean abnormal Dice per slice | mean pooled | "
             "mean normal Dice per slice |", "| --- | --- | --- | --- | --- | --- | --- |"]
    means = []
    for model, rows in rotation.items():
        vals = [r.value() for r in rows]
        scores = None
        if all(v is not None for v in vals):
            scores = {avg: {cls: {"dice": statistics.fmean(r.value(cls, "dice", avg) for r in rows)}
                            for cls in CLASSES} for avg in ("per_slice", "pooled")}
        mean = Row(model, rows[0].cfg, scores)
        lines.append(f"| {model} | " + " | ".join(f4(v) for v in vals) +
                     f" | {f4(mean.value())} | {f4(mean.value(avg='pooled'))} | "
                     f"{f4(mean.value('normal'))} |")
        means.append(mean)
    return "\n".join(lines), means


def ablation_verdict(rows: list[Row]) -> str:
    """Table X: does each ingredient raise the abnormal Dice, by more than TOL?"""
    by = {r.label: r.value() for r in rows}
    if any(v is None for v in by.values()):
        return f"Pending: {sum(v is not None for v in by.values())} of {len(by)} runs scored."
    full = by["AD blocks, weighted CE"]

    def judge(what: str, other: float) -> str:
        diff = full - other
        if diff > TOL:
            word = "**agree**"
        elif diff < -TOL:
            word = "**disagree**"
        else:
            word = f"**cannot separate** (within {TOL}, one seed a run)"
        return f"{what}: full model {full:.4f} vs {other:.4f} ({diff:+.4f}), {word}"
    plain, bare = by["AD blocks, plain CE"], by["no AD blocks, plain CE"]
    weighted_bare = by["no AD blocks, weighted CE"]
    return ("On \"" + published.CLAIMS["X"] + "\": " +
            judge("AD blocks", by["no AD blocks, weighted CE"]) + "; " +
            judge("label weighting", by["AD blocks, plain CE"]) + ". "
            "The claim says *each*, so the other half of the 2 x 2 counts too: AD blocks without "
            f"the weighting {plain:.4f} vs {bare:.4f} ({plain - bare:+.4f}), the weighting "
            f"without AD blocks {weighted_bare:.4f} vs {bare:.4f} ({weighted_bare - bare:+.4f}); "
            "one seed a run.")


def _spread(draws: list[dict], cls: str, avg: str) -> tuple[float, float]:
    values = [d[avg][cls]["dice"] for d in draws]
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def perturbation_table(results: dict[str, dict | None]) -> tuple[str, str]:
    """Table XI: abnormal and normal Dice (mean +- sd over draws) at each eta; the verdict."""
    if not results or any(v is None for v in results.values()):
        done = sum(v is not None for v in results.values())
        return "Pending.", f"Pending: {done} of {len(results)} models."
    etas = [e["eta"] for e in next(iter(results.values()))["etas"]]
    lines = ["| network | class | " + " | ".join(f"eta {e:g}" for e in etas) + " |",
             "|" + " --- |" * (len(etas) + 2)]
    drops: dict[str, dict[float, float]] = {}
    for model, res in results.items():
        for cls in CLASSES:
            cells = []
            for e in res["etas"]:
                m, sd = _spread(e["draws"], cls, "per_slice")
                cells.append(f"{m:.4f} +- {sd:.4f}" if len(e["draws"]) > 1 else f"{m:.4f}")
            lines.append(f"| {model} | {cls} | " + " | ".join(cells) + " |")
        base = next(_spread(e["draws"], "abnormal", "per_slice")[0] for e in res["etas"] if e["eta"] == 0)
        drops[model] = {e["eta"]: base - _spread(e["draws"], "abnormal", "per_slice")[0] for e in res["etas"]}
    if not {"anamnet", "unet"} <= set(drops):
        return "\n".join(lines), "Cannot judge: Anam-Net and U-Net are both needed."
    worse = [e for e in etas if drops["anamnet"][e] > drops["unet"][e] + TOL]
    words = ", ".join(f"eta {e:g}: Anam-Net loses {drops['anamnet'][e]:+.4f}, U-Net "
                      f"{drops['unet'][e]:+.4f}" for e in etas if e != 0)
    verdict = ("**Disagree**" if worse else "**Agree**") + f" with \"{published.CLAIMS['XI']}\" " + \
        f"(Anam-Net may lose at most {TOL} more abnormal Dice than U-Net at every eta): {words}."
    return "\n".join(lines), verdict


def rotation_note(viii: list[Row], means: list[Row]) -> str:
    """Does the rotation keep fold 4's order? One fold and one seed a run: say when it does not."""
    fold4 = {r.label: r.value() for r in viii}
    pairs = [(m.label, fold4.get(m.label), m.value()) for m in means]
    if not pairs or any(a is None or b is None for _, a, b in pairs):
        return ""
    by_fold4 = [n for n, _, _ in sorted(pairs, key=lambda p: -p[1])]
    by_mean = [n for n, _, _ in sorted(pairs, key=lambda p: -p[2])]
    cells = ", ".join(f"{n} {a:.4f} / {b:.4f}" for n, a, b in pairs)
    order = ("The order holds." if by_fold4 == by_mean else
             "The order changes: which network wins depends on the held-out patients, so a "
             "difference of a few hundredths on one fold is not a ranking.")
    return (f"Abnormal Dice per slice, fold 4 / rotation mean: {cells}. Ranked on fold 4: "
            f"{', '.join(by_fold4)}; on the rotation mean: {', '.join(by_mean)}. {order}")


def thesis_verdict(thesis: list[Row], anam: Row | None) -> str:
    """The encoder U-Nets against Anam-Net under the same protocol, and each loss against the other."""
    done = [r for r in thesis if r.scores is not None]
    if anam is None or anam.scores is None or len(done) < len(thesis):
        return f"Pending: {len(done)} of {len(thesis)} runs scored."
    best = max(thesis, key=lambda r: r.value())
    beat = [r for r in thesis if r.value() > anam.value() + TOL]
    sizes = [r.params_m / anam.params_m for r in thesis]
    text = (f"Best encoder U-Net: {best.label} {best.value():.4f} abnormal Dice per slice, against "
            f"Anam-Net's {anam.value():.4f} on the same protocol (Table VIII). ")
    if beat:
        text += (f"Beating Anam-Net by more than {TOL}: " +
                 ", ".join(f"{r.label} {r.value():.4f}" for r in beat) + ". ")
    else:
        text += (f"None beats Anam-Net by more than {TOL}, at {min(sizes):.1f}-{max(sizes):.1f}x its "
                 "parameters, all trained from scratch. ")
    by_model: dict[str, dict[str, Row]] = {}
    for r in thesis:
        by_model.setdefault(r.cfg.model, {})[r.cfg.loss] = r
    losses = []
    for model, runs in by_model.items():
        if {"dice", "ce_weighted"} <= set(runs):
            d, c = runs["dice"], runs["ce_weighted"]
            diff = d.value() - c.value()
            word = ("raises it" if diff > TOL else "lowers it" if diff < -TOL
                    else f"cannot be told apart (within {TOL})")
            losses.append(f"{model}: {d.value():.4f} with the Dice loss vs {c.value():.4f} with the "
                          f"weighted cross-entropy ({diff:+.4f}, the Dice loss {word}; abnormal "
                          f"sensitivity {c.value(metric='sensitivity'):.4f} -> "
                          f"{d.value(metric='sensitivity'):.4f})")
    if losses:
        text += "The thesis' Dice loss against the protocol's loss, abnormal Dice per slice: " + \
            "; ".join(losses) + ". One seed a run."
    return text
