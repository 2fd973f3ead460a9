"""`covseg paper`: train and score what Tables IV and VII-XI need, then write docs/paper.md.

Work runs in the order that serves the most tables soonest: Table VIII's fold-4 models one at
a time, the fastest to train first, each scored at once for Tables IX and XI too while its
weights are on this machine (the weights do not outlive it, the scores do: covseg.paper.cache),
then X, VII, the rotation, the thesis models and Table IV. The page is rewritten after each
step, so a command stopped at any point leaves a page with what is done and "pending" for the
rest.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from covseg.errors import InputError
from covseg.io.outputs import batch_lock
from covseg.paper import tables
from covseg.paper.cache import RunCache
from covseg.paper.page import build_page
from covseg.paper.plan import DEFAULT_PLAN, TABLES, Plan, load_plan

FOLD4 = [("VIII", tables.collect_viii), ("IX", tables.collect_ix), ("XI", tables.collect_xi)]
WORK = [("X", tables.collect_x), ("VII", tables.collect_vii),
        ("VIII", lambda plan, cache: tables.collect_rotation(plan, cache, tables.collect_viii(plan, cache))),
        ("thesis", tables.collect_thesis), ("IV", tables.collect_iv)]


def reproduce(plan: str | Path = DEFAULT_PLAN, runs: str | Path = "runs/paper",
              doc: str | Path = "docs/paper.md", only: list[str] | None = None,
              budget: int | None = None, max_slices: int | None = None,
              progress: bool = True) -> Path:
    """Fill the tables `only` names (default: all) into `runs`, and write `doc` from the cache.

    `budget` replaces the plan's steps per run (every network alike); `max_slices` cuts every
    data set (smoke tests). Returns the page's path.
    """
    unknown = set(only or []) - set(TABLES)
    if unknown:
        raise InputError(f"unknown table(s) {', '.join(sorted(unknown))}; choose from {', '.join(TABLES)}")
    the_plan = load_plan(plan, budget, max_slices)
    root, doc = Path(runs), Path(doc)
    root.mkdir(parents=True, exist_ok=True)
    command = " ".join(["covseg paper", *([f"--plan {plan}"] if Path(plan) != DEFAULT_PLAN else []),
                        *([f"--budget {budget}"] if budget else []),
                        *([f"--max-slices {max_slices}"] if max_slices else [])])
    work, read = RunCache(root, execute=True, progress=progress), RunCache(root, execute=False)

    def write() -> None:
        doc.parent.mkdir(parents=True, exist_ok=True)
        tmp = doc.with_suffix(".tmp")
        tmp.write_text(build_page(the_plan, read, command))
        tmp.replace(doc)

    with batch_lock(root):
        steps = {r["model"]: r["seconds"] for r in tables.collect_step_times(the_plan, work)}
        write()
        fold4 = [step for table, step in FOLD4 if not only or table in only]
        for network in sorted(the_plan.networks, key=steps.__getitem__) if fold4 else []:
            # cheapest first: a session's hours finish the most runs (a checkpoint stays behind)
            one = _one_network(the_plan, network)
            for step in fold4:
                step(one, work)
            write()
        for table, step in WORK:
            if only and table not in only:
                continue
            step(the_plan, work)
            write()
    return doc


def _one_network(plan: Plan, network: str) -> Plan:
    """The plan narrowed to one Table VIII network (and to its Table XI row, if it has one)."""
    p = plan.perturbation
    return replace(plan, networks=[network],
                   perturbation={**p, "models": [m for m in p.get("models", []) if m == network]})
