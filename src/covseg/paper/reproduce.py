"""`covseg paper`: train and score what Tables IV and VII-XI need, then write docs/paper.md.

The tables are first asked, from the cache alone, what they still lack (`RunCache.wants`); the
wants are grouped by run, and each run is trained and given every score it owes at once, while
its weights are on this machine (the weights do not outlive it, the scores do:
covseg.paper.cache). Table VIII's fold-4 runs come first (they also serve IX and XI), then X,
VII and the thesis models; the rotation's networks are known once Table VIII is scored, so a
second round trains them. With one job the cheapest runs go first, so a session's hours finish
the most runs; with several (a machine with a GPU and many cores) runs train side by side in
their own processes, the dearest first. The page is rewritten after each run, so a command
stopped at any point leaves a page with what is done and "pending" for the rest.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import NamedTuple

from covseg.errors import InputError
from covseg.io.outputs import batch_lock
from covseg.paper import tables
from covseg.paper.cache import RunCache, Want
from covseg.paper.page import build_page
from covseg.paper.plan import DEFAULT_PLAN, TABLES, Plan, load_plan

# the tables that train, in the order their runs are served
NEEDS: list[tuple[str, Callable[[Plan, RunCache], object]]] = [
    ("VIII", tables.collect_viii), ("IX", tables.collect_ix), ("XI", tables.collect_xi),
    ("X", tables.collect_x), ("VII", tables.collect_vii),
    ("VIII", lambda plan, cache: tables.collect_rotation(plan, cache, tables.collect_viii(plan, cache))),
    ("thesis", tables.collect_thesis)]


class RunWants(NamedTuple):
    """One run's missing scores: its folder's name, the first table (NEEDS index) that asked."""

    name: str
    order: int
    wants: list[Want]


def reproduce(plan: str | Path = DEFAULT_PLAN, runs: str | Path = "runs/paper",
              doc: str | Path = "docs/paper.md", only: list[str] | None = None,
              budget: int | None = None, max_slices: int | None = None,
              progress: bool = True, jobs: int = 1) -> Path:
    """Fill the tables `only` names (default: all) into `runs`, and write `doc` from the cache.

    `budget` replaces the plan's steps per run (every network alike); `max_slices` cuts every
    data set (smoke tests); `jobs` runs train side by side, each in its own process with its
    share of the cores. Returns the page's path.
    """
    unknown = set(only or []) - set(TABLES)
    if unknown:
        raise InputError(f"unknown table(s) {', '.join(sorted(unknown))}; choose from {', '.join(TABLES)}")
    if jobs < 1:
        raise InputError(f"--jobs {jobs}: give at least 1")
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
        seconds = {r["model"]: r["seconds"] for r in tables.collect_step_times(the_plan, work)}
        write()
        served: set[str] = set()
        while groups := [g for g in wanted(the_plan, root, only) if g.name not in served]:
            # a run that fails raises; one served that still wants (it cannot) is not retried
            served.update(g.name for g in groups)
            for name in _fill_all(root, _ordered(groups, seconds, jobs), jobs, progress):
                if progress and jobs > 1:
                    print(f"covseg paper: {name} done", file=sys.stderr, flush=True)
                write()
        if not only or "IV" in only:
            tables.collect_iv(the_plan, work)
            write()
    return doc


def wanted(plan: Plan, root: Path, only: list[str] | None) -> list[RunWants]:
    """What the selected tables still lack, by run."""
    probe = RunCache(root, execute=False)
    groups: dict[str, tuple[int, list[Want]]] = {}
    seen: set[str] = set()
    for order, (table, collect) in enumerate(NEEDS):
        if only and table not in only:
            continue
        probe.wants.clear()
        collect(plan, probe)
        for want in probe.wants:
            name = probe.folder(want.cfg).name
            key = f"{name} {want.kind} {want.args!r}"
            if key not in seen:
                seen.add(key)
                groups.setdefault(name, (order, []))[1].append(want)
    return [RunWants(name, order, wants) for name, (order, wants) in groups.items()]


def _ordered(groups: list[RunWants], seconds: dict[str, float], jobs: int) -> list[list[Want]]:
    """One job: by table, then cheapest first (the most runs finished in a session's hours).
    Several: dearest first, so the last to finish is a short one."""
    def cost(group: RunWants) -> float:
        return seconds.get(group.wants[0].cfg.model, 0.0)
    ranked = sorted(groups, key=(lambda g: (g.order, cost(g))) if jobs == 1 else (lambda g: -cost(g)))
    return [g.wants for g in ranked]


def fill(root: Path, wants: list[Want], progress: bool = True, threads: int | None = None) -> str:
    """Train one run (or resume it) and compute every score it owes; returns its folder's name."""
    cache = RunCache(root, execute=True, progress=progress)
    for want in wants:
        want.cfg.threads = threads  # not part of the run's hash: the same run on fewer cores
        getattr(cache, want.kind)(want.cfg, *want.args)
    return cache.folder(wants[0].cfg).name


def _fill_all(root: Path, runs: list[list[Want]], jobs: int, progress: bool):
    """Each run's wants filled, here one after another, or in `jobs` processes; yields the names
    as they finish."""
    if jobs == 1:
        for wants in runs:
            yield fill(root, wants, progress)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    spawn = multiprocessing.get_context("spawn")  # no forked copy of this process's threads
    with ProcessPoolExecutor(max_workers=jobs, mp_context=spawn) as pool:
        futures = [pool.submit(fill, root, wants, False, threads) for wants in runs]
        for future in as_completed(futures):
            yield future.result()
