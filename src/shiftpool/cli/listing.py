"""``shiftpool list``: the names every option accepts."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


# -- list -------------------------------------------------------------------------------------


def add_list(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("list", help="list models, operators, data sets and protocols",
                            description="List the names every option accepts.")
    parser.set_defaults(handler=_cmd_list)


def _cmd_list(args: argparse.Namespace) -> int:
    import shiftpool.data as sdata
    import shiftpool.downsample as sds
    import shiftpool.metrics as smetrics
    import shiftpool.models as smodels

    for task in smodels.TASKS:
        print(f"models ({task}): " + ", ".join(smodels.list_models(task)))
    print("operators:  " + ", ".join(sds.list_downsamples()))
    print("data sets:  " + ", ".join(sdata.list_datasets()))
    print("segmentation data sets: " + ", ".join(sdata.list_segmentation_datasets()))
    print("protocols:  " + ", ".join(smetrics.list_protocols()))
    print("metrics:    " + ", ".join(smetrics.METRICS))
    return 0
