"""``shiftpool study``: run a paper's experiment as a preset and write its report."""

from __future__ import annotations

import argparse

from shiftpool.cli.checks import NUM_THREADS, check_device, check_input_dir, check_output_dir
from shiftpool.cli.compare import (
    LAUNCH_OPTIONS,
    launch_settings,
    report_failed_sweep,
    seeds_value,
)
from shiftpool.cli.options import (
    Option,
    add_options,
    bool_value,
    choice_value,
    merge_settings,
    text_value,
)
from shiftpool.core.log import stderr_log

SCALE_CHOICES = ("smoke", "cpu", "paper")
DEVICE_CHOICES = ("auto", "cpu", "cuda")


STUDY_OPTIONS = (
    Option("scale", "smoke (minutes: checks the wiring), cpu (under an hour on 2 CPU cores) or "
           "paper (the paper's budget)", choice_value(lambda: SCALE_CHOICES), default="smoke",
           metavar="SCALE"),
    Option("out_dir", "the study's folder", text_value, shown="runs/study/NAME-SCALE",
           metavar="DIR"),
    Option("seeds", "seeds, comma-separated, each once (replace the preset's)", seeds_value,
           shown="the preset's", metavar="A,B,..."),
    Option("data_dir", "data root", text_value, shown="$SHIFTPOOL_DATA, else a cache",
           metavar="DIR"),
    Option("device", "device: auto, cpu or cuda", choice_value(lambda: DEVICE_CHOICES),
           default="auto", metavar="DEVICE"),
    Option("figures", "draw the figures (needs matplotlib)", bool_value, default=True,
           switch=True),
    NUM_THREADS,
    *LAUNCH_OPTIONS,
)


def add_study(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "study", help="run a paper's experiment (preset) and report each claim's verdict",
        description="Train and evaluate a preset's grid of configurations at each seed "
        "(finished runs are reused, interrupted ones resume), then write report.md, "
        "report.json, report.html and figures into --out-dir: every claim of the paper with "
        "'reproduced', 'not reproduced' or 'inconclusive' and the interval that decides it. "
        "Presets: mouton, s3pool, tips, zhang. Runs go one after another here, or on a Ray "
        "cluster (--launcher ray); a run that fails is reported with its log (--out-dir/logs/) "
        "and the others go on; exit status 1 when any failed.")
    parser.add_argument("name", metavar="NAME", help="the preset: mouton, s3pool, tips or zhang")
    parser.add_argument("--fresh", action="store_true",
                        help="train and evaluate every run again, ignoring earlier results")
    parser.add_argument("--plan", action="store_true",
                        help="print the preset's plan at this scale (arms, seeds, claims) and "
                        "exit without training")
    add_options(parser, STUDY_OPTIONS, "study options")
    parser.set_defaults(handler=_cmd_study)


def _cmd_study(args: argparse.Namespace) -> int:
    from shiftpool.harness.launch import SweepError, get_launcher
    from shiftpool.harness.studies import get_study, plan_study, run_study
    from shiftpool.harness.studies.report import plan_text
    from shiftpool.harness.studies.runner import default_out_dir

    opts = merge_settings(args, STUDY_OPTIONS)
    launcher, address, retries = launch_settings(opts)
    chosen = get_launcher(launcher, address=address, retries=retries)
    preset = get_study(args.name)
    scale = opts.text("scale") or "smoke"
    data_dir, device = opts.text("data_dir"), opts.text("device")
    check_input_dir(data_dir, "--data-dir")
    if device is not None and launcher != "ray":  # on Ray: the workers' device
        check_device(device)
    seeds = opts["seeds"]
    assert seeds is None or isinstance(seeds, list)
    num_threads = opts.integer("num_threads")
    plan = plan_study(preset, scale, seeds=seeds, num_threads=num_threads, data_dir=data_dir,
                      device=device)
    out_dir = opts.text("out_dir") or str(default_out_dir(preset.name, plan.scale))
    if args.plan:
        print(plan_text(preset, plan))
        return 0
    check_output_dir(out_dir, "--out-dir")
    try:
        result = run_study(preset.name, scale, out_dir=out_dir, seeds=seeds, fresh=args.fresh,
                           num_threads=num_threads, data_dir=data_dir, device=device,
                           figures=opts.switch("figures"), log=stderr_log, launcher=chosen)
    except SweepError as error:
        return report_failed_sweep(error)
    for verdict in result.verdicts:
        measured = "" if verdict.estimate is None else f" {verdict.estimate.text()}"
        print(f"{verdict.outcome:>14}  {verdict.claim.key}:{measured}")
    print(f"{result.trained} run(s) trained, {result.reused} reused")
    for kind, path in result.files.items():
        print(f"wrote {kind}: {path}")
    return 0

