"""``shiftpool homogeneity``: local homogeneity of data sets (Mouton et al.)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from shiftpool.cli.checks import NUM_THREADS, check_input_dir, check_output_file, set_threads
from shiftpool.cli.options import (
    Option,
    add_config_file,
    add_options,
    bool_value,
    float_value,
    int_value,
    merge_settings,
    names_value,
    text_value,
)

if TYPE_CHECKING:
    from shiftpool.harness.homogeneity import HomogeneityRow


HOMOGENEITY_DATASETS = ("mnist", "fashionmnist", "cifar10")


# -- homogeneity ------------------------------------------------------------------------------

HOMOGENEITY_OPTIONS = (
    Option("dataset", "comma-separated data sets", names_value,
           default=list(HOMOGENEITY_DATASETS), shown=",".join(HOMOGENEITY_DATASETS),
           metavar="A,B,..."),
    Option("split", "split: train or test", text_value, default="test"),
    Option("window", "window size k, >= 1 (2: a stride of 2)", int_value(), default=2, metavar="K"),
    Option("eps", "tolerance relative to the image's range, in [0, 1]", float_value, default=0.05,
           metavar="EPS"),
    Option("max_images", "use a seeded random subset of N images of each set, >= 1", int_value(),
           shown="every image", metavar="N"),
    Option("data_dir", "data root", shown="$SHIFTPOOL_DATA, else a cache", metavar="DIR"),
    Option("download", "download missing data sets", bool_value, default=True, switch=True),
    Option("output", "also write the results to this JSON file", metavar="FILE"),
    NUM_THREADS,
)


def add_homogeneity(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("homogeneity", help="local homogeneity of data sets (Mouton et al.)",
                            description="Local homogeneity of the images of each data set, with "
                            "95% intervals (our reading of Mouton et al.).")
    add_config_file(parser)
    add_options(parser, HOMOGENEITY_OPTIONS)
    parser.set_defaults(handler=_cmd_homogeneity)


def _cmd_homogeneity(args: argparse.Namespace) -> int:
    from shiftpool.core.io import atomic_write_json
    from shiftpool.harness.homogeneity import (
        check_homogeneity_settings,
        homogeneity_rows,
        markdown_table,
    )

    opts = merge_settings(args, HOMOGENEITY_OPTIONS)
    split, window = opts.text("split") or "test", opts.integer("window")
    eps, max_images = opts.number("eps"), opts.integer("max_images")
    assert window is not None
    datasets = check_homogeneity_settings(opts.names("dataset"), split=split, window=window,
                                          eps=eps, max_images=max_images)
    data_dir, output = opts.text("data_dir"), opts.text("output")
    check_input_dir(data_dir, "--data-dir")
    target = None if output is None else check_output_file(output, "--output")
    set_threads(opts.integer("num_threads"))
    rows: list[HomogeneityRow] = homogeneity_rows(
        datasets, split=split, window=window, eps=eps, max_images=max_images,
        data_dir=data_dir, download=opts.switch("download"))
    print(markdown_table(rows))
    if target is not None:
        print(f"wrote {atomic_write_json(target, [row.to_dict() for row in rows])}")
    return 0
