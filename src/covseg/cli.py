"""The `covseg` command. Each sub-command is a thin shell over the Python API of the same name."""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from covseg import __version__
from covseg.errors import CovsegError, InputError
from covseg.registry import Choices
from covseg.runtime import BACKENDS, PRECISIONS

LUNG_METHODS = Choices("covseg.lungs", "METHODS")  # imported when a --lungs value is checked


def _cmd_info(args: argparse.Namespace) -> int:
    from covseg.io import describe, read_scan

    info = describe(read_scan(args.scan, key=args.key))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    spacing = info["spacing_mm_zyx"]
    print(f"source       {info['source']} ({info['format']})")
    print(f"shape (z,y,x) {' x '.join(map(str, info['shape_zyx']))}")
    print(f"spacing (mm) {' x '.join(f'{s:g}' for s in spacing) if spacing else 'unknown'}")
    print(f"orientation  {info['orientation']}")
    print(f"modality     {info['modality'] or 'unknown'}")
    print(f"intensity    {info['intensity']}  range {info['range'][0]:g} .. {info['range'][1]:g}")
    for w in info["warnings"]:
        print(f"warning: {w}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from covseg.demo import run_demo

    run_demo(args.output, force=args.force, dicom=args.dicom)
    return 0


def _cmd_segment(args: argparse.Namespace) -> int:
    from covseg.io.outputs import check_output_dir

    check_output_dir(args.output)  # before anything is read or loaded
    if args.engine == "ray" and importlib.util.find_spec("ray") is None:
        raise CovsegError("the ray engine needs covseg[ray]: pip install 'covseg[ray]'")
    if len(args.scans) > 1 or args.engine == "ray":
        if args.lung_mask:
            raise InputError("--lung-mask belongs to one scan; give one scan with it")
        return _segment_batch(args)
    from covseg.io import mask_suffix, read_scan

    scan = read_scan(args.scans[0], key=args.key)  # a bad file is refused before torch loads
    from covseg.pipeline import check_outputs, output_names, segment

    from covseg.io.dicom_seg import choose_formats, parse_formats, select_outputs

    formats = choose_formats(scan, parse_formats(args.format))  # refused before torch loads
    check_outputs(args.output, list(select_outputs(output_names(mask_suffix(scan)), formats).values()),
                  args.force)
    result = segment(scan, args.output, force=args.force, segmenter=_segmenter(args),
                     progress=True, lungs=args.lungs, override_qa=args.override_qa,
                     lung_mask=args.lung_mask, formats=formats, seg_type=args.seg_type)
    q = result.quantification
    unit = "mL" if result.scan.spacing_known else "voxels/1000 (no pixel size)"
    print(f"lungs {q.lung_ml:.1f} {unit}, lesions {q.lesion_ml:.1f} {unit}, involvement "
          f"{q.involvement_percent:.1f} % (right {q.right.involvement_percent:.1f} %, "
          f"left {q.left.involvement_percent:.1f} %), grade {q.severity.grade}")
    for w in result.report.warnings:
        print(f"warning: {w}")
    if "seg" in result.files:
        print(f"DICOM-SEG: {result.files['seg']}")
    print(f"report: {result.files['html']}")
    return 0


def _segmenter(args: argparse.Namespace):
    """The lesion network the options name (loads torch: call it once the inputs passed)."""
    from covseg.infer import LesionSegmenter

    return LesionSegmenter(args.weights, model=args.model, backend=args.backend,
                           mirror=args.mirror, precision=args.precision)


def _segment_batch(args: argparse.Namespace) -> int:
    """Several scans: resumable, one row each; the model loads once the folder is locked."""
    if args.engine == "ray":
        from covseg.ray_engine import segment_many_ray

        rows = segment_many_ray(args.scans, args.output, force=args.force,
                                segmenter=functools.partial(_segmenter, args), lungs=args.lungs,
                                override_qa=args.override_qa, debug=args.debug,
                                address=args.address, workers=args.workers)
    else:
        from covseg.pipeline import segment_many

        rows = segment_many(args.scans, args.output, force=args.force,
                            segmenter=lambda: _segmenter(args), lungs=args.lungs,
                            override_qa=args.override_qa, debug=args.debug)
    from covseg.pipeline import batch_exit_code

    for row in rows:
        if row["status"] == "ok":
            note = f" ({row['message']})" if row.get("message") else ""
            print(f"{row['scan']}: {row['grade']}, {float(row['involvement_percent']):.1f} % "
                  f"involved{note}")
        else:
            print(f"{row['scan']}: {row['status']}: {row['message']}")
    done = sum(row["status"] == "ok" for row in rows)
    print(f"{done} of {len(rows)} scans done; summary: {args.output / 'summary.csv'}")
    return batch_exit_code(rows)


def _cmd_compare(args: argparse.Namespace) -> int:
    """Follow-up of one patient: two scans or two segment folders -> compare.json/.html."""
    from covseg.compare import compare

    s = compare(args.before, args.after, args.output, force=args.force).summary
    for w in s["warnings"]:
        print(f"warning: {w}")
    o = s["change"]["overall"]
    print(f"{s['verdict']}: involvement {s['before']['involvement_percent']:.1f} % -> "
          f"{s['after']['involvement_percent']:.1f} % ({o['involvement_pp']:+.1f} points; stable "
          f"within +/-{s['rule']['stable_band_pp']:g}), lesions {o['lesion_ml']:+.1f} mL, grade "
          f"{s['before']['grade']} -> {s['after']['grade']}")
    print(f"report: {args.output / 'compare.html'}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from covseg.evaluate.profile import model_table

    print(model_table(args.names or None, latency=not args.no_latency))
    return 0


def _cmd_ship(args: argparse.Namespace) -> int:
    """A finished run's weights with their metadata sidecar: usable with --weights alone."""
    from covseg.train.ship import ship

    metrics = {}
    if args.metrics:
        try:
            metrics = json.loads(args.metrics.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"--metrics {args.metrics}: not a readable JSON file ({exc})") from None
        if not isinstance(metrics, dict):
            raise InputError(f"--metrics {args.metrics}: give a JSON object of named figures")
    dest = ship(args.run, args.output, args.trained_on, metrics, force=args.force,
                threshold=args.threshold, margin=args.margin)
    print(f"weights: {dest} (metadata: {dest.with_suffix('.json')})")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from covseg.train import load_config, train

    cfg = load_config(args.config)
    if args.epochs:
        cfg.epochs = args.epochs
    if args.seed is not None:  # a recipe's spread over seeds, without a config file per seed
        cfg.seed = args.seed
    if args.precision:  # this machine's measured choice; recorded in the run's config.json
        cfg.precision = args.precision
    out = args.output or Path("runs") / cfg.name
    record = train(cfg, out, resume=args.resume, force=args.force, max_steps=args.max_steps)
    print(f"training run in {out}: {json.dumps(record)}")
    return 0


def _cmd_paper(args: argparse.Namespace) -> int:
    from covseg.paper import reproduce

    doc = reproduce(args.plan, args.runs, args.doc, only=args.only, budget=args.budget,
                    max_slices=args.max_slices, jobs=args.jobs)
    print(f"wrote {doc}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from covseg.evaluate import evaluate_model
    from covseg.infer import LesionSegmenter, PostProcess

    if args.lungs == "hu":
        from covseg.evaluate.lungs import evaluate_hu_lungs
        for name, value in evaluate_hu_lungs().items():
            print(f"{name:<34}{value:.4f}")
        return 0
    if args.lungs:
        from covseg.evaluate.lungs import evaluate_lungs
        print(evaluate_lungs(args.lungs, folds=args.folds, limit=args.limit).table())
        return 0
    segmenter = LesionSegmenter(args.weights, model=args.model, mirror=args.mirror,
                                precision=args.precision,
                                postprocess=PostProcess() if args.no_postprocess else None)
    report = evaluate_model(config=args.config, dataset=args.dataset, folds=args.folds,
                            csv_path=args.csv, limit=args.limit, force=args.force,
                            segmenter=segmenter, cases_path=args.cases)
    print(report.table())
    if report.per_case is not None:
        print(report.per_case.table())
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from covseg.evaluate.tune import tune_postprocess
    from covseg.infer import PostProcess
    from covseg.io import atomic_write, check_writable

    if args.output:
        check_writable(args.output, args.force)
    ranked = tune_postprocess(args.configs, args.runs)
    untuned = next(c for c in ranked if c.postprocess == PostProcess())
    print(f"{'margin':>8}{'min lesion px':>15}{'per-slice Dice':>16}{'pooled Dice':>13}")
    for c in [*ranked[:args.top], untuned]:
        mark = "  (untuned)" if c is untuned else ""
        print(f"{c.postprocess.margin:>8.2f}{c.postprocess.min_lesion_px:>15}"
              f"{c.per_slice_dice:>16.4f}{c.pooled_dice:>13.4f}{mark}")
    if args.output:
        best = ranked[0]
        record = {"postprocess": best.postprocess.as_dict(),
                  "tuned_on": [str(c) for c in args.configs],
                  "abnormal_dice": {"per_slice": best.per_slice_dice, "pooled": best.pooled_dice},
                  "untuned_abnormal_dice": {"per_slice": untuned.per_slice_dice,
                                            "pooled": untuned.pooled_dice}}
        atomic_write(args.output, lambda tmp: tmp.write_text(json.dumps(record, indent=2)),
                     args.force)
        print(f"wrote {args.output}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from covseg.export import export_onnx

    path = export_onnx(args.output, weights=args.weights, int8=args.int8, force=args.force)
    print(f"wrote {path} ({path.stat().st_size / 2 ** 20:.1f} MiB, "
          f"{'int8 static QDQ' if args.int8 else 'fp32'}, input 'image' N x 1 x H x W, H and W "
          "multiples of 16)")
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from covseg.benchmark import benchmark, format_report

    result = benchmark(slices=args.slices, reference_slices=args.reference_slices,
                       backend=args.backend)
    print(format_report(result))
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    """The HTTP service (covseg[serve]); the token may come from COVSEG_TOKEN instead of argv."""
    import os

    from covseg.serve.run import serve

    serve(args.host, args.port, args.work, workers=args.workers, max_upload_mb=args.max_upload_mb,
          max_queue=args.max_queue, token=args.token or os.environ.get("COVSEG_TOKEN") or None,
          min_free_mb=args.min_free_mb)
    return 0


def add_network_options(p: argparse.ArgumentParser) -> None:
    """The lesion network's options, shared by segment and evaluate."""
    p.add_argument("--weights", type=Path, nargs="+", help="weights file (default: the shipped "
                   "Anam-Net); several are averaged as one ensemble")
    p.add_argument("--model", help="architecture of --weights when no .json lies beside it "
                   "(a name from `covseg models`)")
    p.add_argument("--mirror", action="store_true", help="also run left-right mirrored slices "
                   "and average (test-time augmentation; twice the network time)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="PyTorch backend's "
                   "arithmetic (default: bf16 where the CPU has native bf16, else fp32)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="covseg", description="Find and measure COVID-19 lung damage in chest CT.")
    parser.add_argument("--version", action="version", version=f"covseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.set_defaults(func=func)
        return p

    p = add("info", _cmd_info, "describe a scan and warn if it does not look like a chest CT in HU")
    p.add_argument("scan", help="NIfTI file, DICOM folder or file, PNG/JPG slice, .mat or .npy")
    p.add_argument("--key", help="array name inside a .mat file")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("demo", _cmd_demo, "build a synthetic chest CT, analyse it and report")
    p.add_argument("-o", "--output", type=Path, default=Path("covseg-demo"),
                   help="output folder (default: ./covseg-demo)")
    p.add_argument("--force", action="store_true", help="replace files of an earlier demo")
    p.add_argument("--dicom", action="store_true", help="hand the phantom over as a DICOM series "
                   "(the results then include the DICOM-SEG lesions.seg.dcm)")

    p = add("segment", _cmd_segment, "find lungs and lesions in a scan, measure them, report")
    p.add_argument("scans", nargs="+", metavar="SCAN",
                   help="NIfTI file, DICOM folder or file, PNG/JPG slice, .mat or .npy; several "
                        "scans go to OUTPUT/<name>/ with a summary.csv")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--force", action="store_true", help="replace earlier results in the folder")
    add_network_options(p)
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="inference engine (default: the fastest validated one)")
    p.add_argument("--lungs", choices=LUNG_METHODS, default="auto", metavar="METHOD",
                   help="lung extractor, one of %(choices)s (default: HU thresholds for CT; for "
                        "pictures the lung model, or a lung-masked picture's own lungs)")
    p.add_argument("--key", help="array name inside a .mat file")
    p.add_argument("--lung-mask", type=Path, help="your own lung mask (a mask file on the scan's "
                   "grid, non-zero = lung) instead of covseg's lung extraction; one scan only")
    p.add_argument("--format", help="outputs, comma-separated: nifti, dicom-seg (default: both for "
                   "a DICOM series, nifti otherwise)")
    p.add_argument("--seg-type", choices=["binary", "fractional"], default="binary",
                   help="DICOM-SEG segmentation type (default: binary)")
    p.add_argument("--override-qa", action="store_true", help="measure an input the QA refuses "
                   "(not CT, not HU, localiser, non-axial, tilted or gapped series): for experts; "
                   "the report then says so at the top, in red")
    p.add_argument("--engine", choices=["local", "ray"], default="local", help="local: this "
                   "process, scan after scan; ray: each scan a task on a Ray cluster's workers, "
                   "one model each, results as a batch (needs covseg[ray])")
    p.add_argument("--address", help="with --engine ray: the cluster's head, HOST:6379 (default: "
                   "start Ray on this machine's CPUs)")
    p.add_argument("--workers", type=int, help="with --engine ray: workers, one model each "
                   "(default: one per CPU of the cluster)")

    p = add("compare", _cmd_compare, "follow-up: the change between two scans of one patient")
    p.add_argument("before", type=Path, help="earlier scan, or an output folder of covseg segment")
    p.add_argument("after", type=Path, help="later scan, or an output folder of covseg segment")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for compare.json/.html")
    p.add_argument("--force", action="store_true", help="replace an earlier comparison there")

    p = add("models", _cmd_models, "list the model zoo with parameters, size, GMACs and latency")
    p.add_argument("names", nargs="*", help="only these models")
    p.add_argument("--no-latency", action="store_true", help="skip the timing (fast)")

    p = add("train", _cmd_train, "train a model from a YAML experiment file")
    p.add_argument("config", type=Path)
    p.add_argument("-o", "--output", type=Path, help="run folder (default: runs/NAME)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--force", action="store_true", help="start over in a folder with a run")
    p.add_argument("--epochs", type=int, help="override the config's epochs")
    p.add_argument("--seed", type=int, help="override the config's seed")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (resumable)")
    p.add_argument("--precision", choices=PRECISIONS, help="override the config's precision (auto: "
                   "time fp32 and bf16 at the start and train in the faster)")

    p = add("ship", _cmd_ship, "turn a finished training run into weights with their metadata "
            "(usable with --weights alone)")
    p.add_argument("run", type=Path, help="the run folder (holds model.pt and config.json)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the weights file to write")
    p.add_argument("--trained-on", required=True, help="what the weights were trained on, in "
                   "words (data set, folds, licence); reports quote it")
    p.add_argument("--threshold", type=float, help="lung models: the probability above which a "
                   "pixel is lung, chosen on a held-out fold (default 0.5)")
    p.add_argument("--margin", type=float, help="lesion models: the decision margin chosen for "
                   "these weights (abnormal where logit(abnormal) - logit(normal) > margin)")
    p.add_argument("--metrics", type=Path, help="a JSON object of the figures the weights were "
                   "measured at (name: value, with the protocol in the name), kept in the metadata")
    p.add_argument("--force", action="store_true", help="replace existing weights")

    p = add("paper", _cmd_paper, "train and score what the paper's Tables IV, VII-XI need under "
            "one protocol (hours; resumable) and write them beside the paper's figures")
    p.add_argument("--only", nargs="+", choices=Choices("covseg.paper.plan", "TABLES"),
                   metavar="TABLE", help="fill only these tables, of %(choices)s (default: all)")
    p.add_argument("--budget", type=int, help="training steps per run, every network alike "
                   "(default: the plan's)")
    p.add_argument("--max-slices", type=int, help="cut every data set to this many slices (smoke)")
    p.add_argument("--plan", type=Path, default=Path("configs/paper/protocol.yaml"))
    p.add_argument("--runs", type=Path, default=Path("runs/paper"), help="the run cache")
    p.add_argument("--doc", type=Path, default=Path("docs/paper.md"), help="the page to write")
    p.add_argument("--jobs", type=int, default=1, help="runs trained side by side, each in its "
                   "own process with its share of the cores (a GPU machine; default: 1)")

    p = add("tune", _cmd_tune, "choose the post-processing (decision margin, smallest lesion) "
            "on held-out folds")
    p.add_argument("configs", type=Path, nargs="+", help="training configs whose runs "
                   "(RUNS/NAME/model.pt) score their own test folds, e.g. the 3 rotation configs")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder of the runs")
    p.add_argument("--top", type=int, default=10, help="rows of the ranking to print")
    p.add_argument("-o", "--output", type=Path, help="write the best settings as JSON")
    p.add_argument("--force", action="store_true", help="replace an existing JSON")

    p = add("export", _cmd_export, "write the model as ONNX for onnxruntime (phones, boards)")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--int8", action="store_true", help="static int8 quantization (needs ma20 "
                   "for calibration)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--weights", type=Path, help="weights file (default: the shipped model)")
    p.add_argument("--force", action="store_true", help="replace an existing file")

    p = add("benchmark", _cmd_benchmark, "time covseg against the paper's reference inference")
    p.add_argument("--slices", type=int, default=300, help="slices of the 512x512 test volume")
    p.add_argument("--reference-slices", type=int, default=8,
                   help="slices the slow reference path is timed on")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")

    p = add("serve", _cmd_serve, "run covseg as an HTTP service: upload scans, poll jobs, fetch "
            "results (needs covseg[serve])")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--work", type=Path, default=Path("covseg-work"),
                   help="folder for the job store, uploads and results (default: ./covseg-work)")
    p.add_argument("--workers", type=int, default=1, help="worker processes, one model each")
    p.add_argument("--max-upload-mb", type=float, default=512, help="largest upload (default: 512)")
    p.add_argument("--max-queue", type=int, default=32, help="queued jobs before uploads get 429")
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (or set COVSEG_TOKEN)")
    p.add_argument("--min-free-mb", type=float,
                   help="refuse uploads (503) while the work folder has less free space "
                        "(default: twice --max-upload-mb plus 64)")

    p = add("evaluate", _cmd_evaluate, "score a model on held-out data in the paper's layout")
    add_network_options(p)
    p.add_argument("--config", type=Path, help="experiment file naming the test data")
    p.add_argument("--dataset", choices=["ma20", "medseg100"], help="override the test data set")
    p.add_argument("--folds", type=int, nargs="+", help="ma20 test folds (default: 4)")
    p.add_argument("--csv", type=Path, help="write per-slice figures to this CSV")
    p.add_argument("--cases", type=Path, help="write per-case figures (3-D Dice, lesion mL) to this "
                   "CSV and their summary beside it as .json (a config's own volumes)")
    p.add_argument("--limit", type=int, help="score only this many slices (quick checks)")
    p.add_argument("--lungs", choices=Choices("covseg.lungs", "METHODS", exclude=("auto", "masked")),
                   metavar="METHOD", help="score a lung extractor (%(choices)s) instead: "
                   "model/intensity against ma20's lung masks, hu against TotalSegmentator's "
                   "lobes on real_ct")
    p.add_argument("--no-postprocess", action="store_true",
                   help="plain labels, without the model's tuned margin and smallest lesion")
    p.add_argument("--force", action="store_true", help="replace an existing CSV")
    return parser


def _stop_on_signals() -> None:
    """`kill -INT` and `kill` (SIGTERM) stop a run as Ctrl-C does: training checkpoints, partial
    outputs are removed. A command started with `nohup ... &` from a script inherits SIGINT
    ignored, so the handler is set here rather than left to Python's start-up."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        _stop_on_signals()
    try:
        return args.func(args)
    except CovsegError as exc:
        if args.debug:
            raise
        print(f"covseg: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("covseg: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if args.debug:
            raise
        from covseg.io.outputs import is_disk_full

        if is_disk_full(exc):
            print(f"covseg: error: no space left on the device ({exc.__class__.__name__}); free "
                  "some space or choose another output folder", file=sys.stderr)
            return 2
        print(f"covseg: internal error: {exc.__class__.__name__}: {exc} (rerun with --debug and "
              "report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
