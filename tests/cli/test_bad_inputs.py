"""The bad-input sweep: every command line here is wrong, and each must be refused the same way.

For each row: exit status 2, exactly one line on stderr, no traceback, the offending value or
option named in that line, and no work started (the ``no_work`` fixture makes training, data
loading, evaluation, export and timing fail the test). Each row runs ``main`` in-process, in
milliseconds.

Placeholders in a row's arguments: ``{ckpt}`` a valid checkpoint, ``{text}`` a text file,
``{dir}`` an existing folder, ``{cfg}`` a YAML file holding the row's ``yaml`` text,
``{readonly}`` a read-only folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
AS_ROOT = pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                             reason="root ignores folder permissions")


@dataclass(frozen=True)
class Case:
    """One bad command line; ``named`` must appear in the error line."""

    argv: tuple[str, ...]
    named: str
    yaml: str | None = None
    marks: tuple[pytest.MarkDecorator, ...] = ()

    def param(self) -> pytest.ParameterSet:
        label = " ".join(self.argv) + (f" <{self.yaml.strip()}>" if self.yaml else "")
        return pytest.param(self, id=label[:90], marks=self.marks)


def case(*argv: str, named: str, yaml: str | None = None,
         marks: tuple[pytest.MarkDecorator, ...] = ()) -> Case:
    return Case(tuple(argv), named, yaml, marks)


# -- TrainConfig fields: each bad value through a flag and through --config -------------------
# (field, value, named); bool fields are only reachable through a file (flags are switches).
FIELD_VALUES: list[tuple[str, str, str]] = [
    ("model", "nosuch", "nosuch"),
    ("downsample", "nosuch", "nosuch"),
    ("downsample_options", "nosuch=1", "nosuch"),
    ("downsample_options", "filter_size", "filter_size"),
    ("model_options", "nosuch=1", "nosuch"),
    ("model_options", "channels='16 32 64'", "channels"),
    ("model_options", "channels=[16,-32,64]", "channels"),
    ("dataset", "folder:/nonexistent/images", "/nonexistent/images"),
    ("dataset", "nosuch", "nosuch"),
    ("train_subset", "0", "train_subset"),
    ("train_subset", "x", "train_subset"),
    ("augment", "nosuch=1", "nosuch"),
    ("epochs", "0", "epochs"),
    ("epochs", "1.5", "epochs"),
    ("batch_size", "0", "batch_size"),
    ("optimizer", "nosuch", "nosuch"),
    ("lr", "nan", "lr"),
    ("lr", "inf", "lr"),
    ("lr", "-1", "lr"),
    ("momentum", "nan", "momentum"),
    ("weight_decay", "-1", "weight_decay"),
    ("schedule", "nosuch", "nosuch"),
    ("warmup_epochs", "-1", "warmup_epochs"),
    ("pct_start", "1", "pct_start"),
    ("pct_start", "0", "pct_start"),
    ("label_smoothing", "1", "label_smoothing"),
    ("label_smoothing", "-0.1", "label_smoothing"),
    ("grad_clip", "0", "grad_clip"),
    ("grad_clip", "-1", "grad_clip"),
    ("tips_alpha", "2", "tips_alpha"),
    ("tips_undo_start_epoch", "-1", "tips_undo_start_epoch"),
    ("lps_tau_start", "0", "lps_tau"),
    ("lps_tau_end", "-1", "lps_tau"),
    ("data_dir", "{text}", "data-dir"),
    ("out_dir", "{text}/run", "out-dir"),
    ("amp", "nosuch", "nosuch"),
    ("device", "nosuch", "nosuch"),
    ("num_threads", "0", "num_threads"),
    ("num_threads", "-1", "num_threads"),
    ("seed", "-1", "seed"),
    ("seed", str(2**63), "seed"),
    ("eval_every", "-1", "eval_every"),
    ("eval_batch_size", "0", "eval_batch_size"),
    ("eval_protocol", "nosuch", "nosuch"),
    ("eval_metrics", "nosuch", "nosuch"),
    ("eval_metrics", ",", "eval_metrics"),
    ("eval_max_images", "-3", "eval_max_images"),
]
BOOL_FIELDS = ("circular", "download", "nesterov", "decay_norm_and_bias", "channels_last",
               "compile", "deterministic", "progress", "tensorboard")


def _field_cases(command: str, prefix: tuple[str, ...], fields: list[tuple[str, str, str]]
                 ) -> list[Case]:
    cases = []
    for field, value, named in fields:
        cases.append(case(command, *prefix, "--" + field.replace("_", "-"), value, named=named))
        cases.append(case(command, *prefix, "--config", "{cfg}", named=named,
                          yaml=f"{field}: {_quoted(value)}\n"))
    return cases


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


TRAIN_FIELDS = [
    *_field_cases("train", (), FIELD_VALUES),
    case("train", "--config", "{cfg}", named="downsample", yaml="downsample: 3.5\n"),
    *(case("train", "--config", "{cfg}", named=name, yaml=f"{name}: maybe\n")
      for name in BOOL_FIELDS),
    case("train", "--circular=maybe", named="maybe"),
    case("train", "--no-progress=1", named="1"),
    case("train", "--lr", "1e400x", named="1e400x"),
    case("train", "--momentum", "inf", named="momentum"),
    case("train", "--eval-metrics", "accuracy,nosuch", named="nosuch"),
    case("train", "--protocol", "nosuch", named="nosuch"),
    case("train", "--metrics", ",", named="metrics"),
]
# compare shares the training options (bar the operator's); a sample through both routes.
COMPARE_FIELDS = _field_cases("compare", ("--downsample", "max"), [
    row for row in FIELD_VALUES if row[0] in (
        "lr", "weight_decay", "grad_clip", "seed", "num_threads", "eval_protocol",
        "eval_metrics", "model_options", "epochs", "dataset", "model")
])

PATHS = [
    case("train", "--out-dir", "{text}", named="--out-dir"),
    case("train", "--out-dir", "{text}/run", named="--out-dir"),
    case("train", "--out-dir", "", named="out_dir"),
    case("train", "--data-dir", "{text}", named="--data-dir"),
    case("train", "--config", "{cfg}", named="--out-dir", yaml="out_dir: {text}\n"),
    case("train", "--out-dir", "{readonly}/run", named="--out-dir", marks=(AS_ROOT,)),
    case("compare", "--downsample", "max", "--out-dir", "{text}", named="--out-dir"),
    case("compare", "--downsample", "max", "--out-dir", "{text}/x/y", named="--out-dir"),
    case("compare", "--downsample", "max", "--out-dir", "{readonly}", named="--out-dir",
         marks=(AS_ROOT,)),
    case("evaluate", "{ckpt}", "--output", "{dir}", named="--output"),
    case("evaluate", "{ckpt}", "--output", "{text}/e.json", named="--output"),
    case("evaluate", "{ckpt}", "--output", "", named="--output"),
    case("evaluate", "{ckpt}", "--output", "{readonly}/e.json", named="--output",
         marks=(AS_ROOT,)),
    case("evaluate", "{ckpt}", "--data-dir", "{text}", named="--data-dir"),
    case("homogeneity", "--output", "{dir}", named="--output"),
    case("homogeneity", "--output", "{text}/h.json", named="--output"),
    case("homogeneity", "--data-dir", "{text}", named="--data-dir"),
    case("export", "{ckpt}", "--format", "onnx", "--output", "{dir}", named="--output"),
    case("export", "{ckpt}", "--format", "torchscript", "--output", "{text}/m.pt",
         named="--output"),
    case("benchmark", "--", "--out", "{text}", named="--out"),
    case("benchmark", "--", "--out", "{text}/results", named="--out"),
]

DEVICES = [
    case("train", "--device", "cuda", named="cuda", marks=(NO_CUDA,)),
    case("compare", "--downsample", "max", "--device", "cuda", named="cuda", marks=(NO_CUDA,)),
    case("evaluate", "{ckpt}", "--device", "cuda", named="cuda", marks=(NO_CUDA,)),
    case("evaluate", "{ckpt}", "--device", "tpu", named="tpu"),
    case("benchmark", "--", "--device", "cuda", named="cuda", marks=(NO_CUDA,)),
    case("benchmark", "--", "--device", "tpu", named="tpu"),
]

CONFIG_FILES = [
    case("train", "--config", "{cfg}", named="line 2", yaml="epochs: [1, 2\nlr: 0.1\n"),
    case("train", "--config", "{cfg}", named="line 2", yaml="epochs: 1\n lr: 2\n"),
    case("train", "--config", "{cfg}", named="python/object",
         yaml="model: !!python/object/apply:os.system ['echo planted']\n"),
    case("train", "--config", "{cfg}", named="python/name",
         yaml="!!python/name:os.system\n"),
    case("train", "--config", "{cfg}", named="epochs", yaml="epochs: 1\nlr: 0.1\nepochs: 5\n"),
    case("compare", "--config", "{cfg}", named="methods",
         yaml="methods: [max]\nmethods: [blur]\n"),
    case("train", "--config", "{cfg}", named="mapping", yaml="- epochs\n- 3\n"),
    case("train", "--config", "{cfg}", named="epochz", yaml="epochz: 3\n"),
    case("train", "--config", "{cfg}", named="line 1", yaml="\tepochs: 3\n"),
    case("train", "--config", "{text}/none.yaml", named="none.yaml"),
    case("train", "--config", "{dir}", named="folder"),
    case("train", "--config", "{binary}", named="UTF-8"),
    case("evaluate", "{ckpt}", "--config", "{cfg}", named="epochs", yaml="epochs: 3\n"),
    case("evaluate", "{ckpt}", "--config", "{cfg}", named="max_images",
         yaml="max_images: -3\n"),
    case("evaluate", "{ckpt}", "--config", "{cfg}", named="metrics", yaml="metrics: []\n"),
    case("evaluate", "{ckpt}", "--config", "{cfg}", named="nosuch",
         yaml="metrics: [accuracy, nosuch]\n"),
    case("evaluate", "{ckpt}", "--config", "{cfg}", named="progress", yaml="progress: 3\n"),
    case("evaluate", "{ckpt}", "--config", "{cfg}", named="line 2",
         yaml="protocol: aps\nprotocol: tips\n"),
    case("homogeneity", "--config", "{cfg}", named="eps", yaml="eps: .nan\n"),
    case("homogeneity", "--config", "{cfg}", named="window", yaml="window: 0\n"),
    case("homogeneity", "--config", "{cfg}", named="dataset", yaml="dataset: []\n"),
    case("homogeneity", "--config", "{cfg}", named="lr", yaml="lr: 0.1\n"),
    case("homogeneity", "--config", "{cfg}", named="download", yaml="download: 'yes'\n"),
    case("export", "{ckpt}", "--config", "{cfg}", named="99", yaml="format: onnx\nopset: 99\n"),
    case("export", "{ckpt}", "--config", "{cfg}", named="nosuch", yaml="format: nosuch\n"),
    case("export", "{ckpt}", "--config", "{cfg}", named="epochs",
         yaml="format: onnx\nepochs: 1\n"),
    case("compare", "--config", "{cfg}", named="methods", yaml="methods: []\n"),
    case("compare", "--config", "{cfg}", named="downsample",
         yaml="methods: [max]\ndownsample: [blur]\n"),
    case("compare", "--config", "{cfg}", named="method_options",
         yaml="methods: [max]\nmethod_options: 5\n"),
    case("compare", "--config", "{cfg}", named="figures", yaml="methods: [max]\nfigures: x\n"),
]

EVALUATE = [
    case("evaluate", "{ckpt}", "--max-images", "-3", named="--max-images"),
    case("evaluate", "{ckpt}", "--max-images", "0", named="--max-images"),
    case("evaluate", "{ckpt}", "--max-images", "x", named="--max-images"),
    case("evaluate", "{ckpt}", "--max-images", "1.5", named="--max-images"),
    case("evaluate", "{ckpt}", "--max-shift", "-1", named="--max-shift"),
    case("evaluate", "{ckpt}", "--max-shift", "0", named="--max-shift"),
    case("evaluate", "{ckpt}", "--batch-size", "0", named="--batch-size"),
    case("evaluate", "{ckpt}", "--batch-size", "-2", named="--batch-size"),
    case("evaluate", "{ckpt}", "--metrics", ",", named="--metrics"),
    case("evaluate", "{ckpt}", "--metrics", "", named="--metrics"),
    case("evaluate", "{ckpt}", "--metrics", "nosuch", named="nosuch"),
    case("evaluate", "{ckpt}", "--metrics", "accuracy,,fidelity", named="--metrics"),
    case("evaluate", "{ckpt}", "--protocol", "nosuch", named="nosuch"),
    case("evaluate", "{ckpt}", "--seed", "-1", named="seed"),
    case("evaluate", "{ckpt}", "--seed", str(2**63), named="seed"),
    case("evaluate", "{ckpt}", "--seed", "x", named="--seed"),
    case("evaluate", "{ckpt}", "--num-threads", "0", named="--num-threads"),
    case("evaluate", "{ckpt}", "--num-threads", "-1", named="--num-threads"),
    case("evaluate", "{text}", named="{text}"),
    case("evaluate", "{yamltext}", named="{yamltext}"),
    case("evaluate", "{passwd}", named="{passwd}"),
    case("evaluate", "{word}", named="{word}"),
    case("export", "{yamltext}", "--format", "torchscript", named="{yamltext}"),
    case("evaluate", "{dir}/none.pt", named="none.pt"),
    case("evaluate", "{dir}", named="{dir}"),
    case("evaluate", named="CHECKPOINT"),
    case("evaluate", "{ckpt}", "--epochs", "3", named="--epochs"),
    case("evaluate", "{ckpt}", "--max", "3", named="--max"),
]

HOMOGENEITY = [
    case("homogeneity", "--max-images", "-1", named="max_images"),
    case("homogeneity", "--max-images", "0", named="max_images"),
    case("homogeneity", "--eps", "nan", named="eps"),
    case("homogeneity", "--eps", "-1", named="eps"),
    case("homogeneity", "--eps", "2", named="eps"),
    case("homogeneity", "--eps", "inf", named="eps"),
    case("homogeneity", "--eps", "x", named="--eps"),
    case("homogeneity", "--window", "0", named="window"),
    case("homogeneity", "--window", "-2", named="window"),
    case("homogeneity", "--window", "2.5", named="--window"),
    case("homogeneity", "--dataset", "nosuch", named="nosuch"),
    case("homogeneity", "--dataset", ",", named="--dataset"),
    case("homogeneity", "--dataset", "mnist,,cifar10", named="--dataset"),
    case("homogeneity", "--split", "val", named="val"),
    case("homogeneity", "--num-threads", "0", named="--num-threads"),
    case("homogeneity", "--num-threads", "-1", named="--num-threads"),
    case("homogeneity", "--download=x", named="x"),
]

EXPORT = [
    case("export", "{ckpt}", "--format", "onnx", "--opset", "1", named="opset"),
    case("export", "{ckpt}", "--format", "onnx", "--opset", "99", named="opset"),
    case("export", "{ckpt}", "--format", "onnx", "--opset", "-1", named="opset"),
    case("export", "{ckpt}", "--format", "onnx", "--opset", "x", named="--opset"),
    case("export", "{ckpt}", "--format", "torchscript", "--opset", "18", named="opset"),
    case("export", "{ckpt}", "--format", "onnx", "--batch-size", "-1", named="--batch-size"),
    case("export", "{ckpt}", "--format", "onnx", "--batch-size", "0", named="--batch-size"),
    case("export", "{ckpt}", "--format", "onnx", "--batch-size", "x", named="--batch-size"),
    case("export", "{ckpt}", "--format", "nosuch", named="nosuch"),
    case("export", "{ckpt}", named="--format"),
    case("export", "{ckpt}", "--format", "onnx", "--num-threads", "0", named="--num-threads"),
    case("export", "{text}", "--format", "onnx", named="{text}"),
    case("export", "{dir}/none.pt", "--format", "torchscript", named="none.pt"),
    case("export", "{ckpt}", "--format", "onnx", "--verify=x", named="x"),
]

COMPARE = [
    case("compare", "--downsample", "max", "--method-options", "{x", named="--method-options"),
    case("compare", "--downsample", "max", "--method-options", "[1, 2]",
         named="--method-options"),
    case("compare", "--downsample", "max", "--method-options", '"max"', named="--method-options"),
    case("compare", "--downsample", "max,blur", "--method-options", '{"blur": 5}', named="blur"),
    case("compare", "--downsample", "max,blur", "--method-options", '{"tips": {}}', named="tips"),
    case("compare", "--downsample", "max,blur", "--method-options",
         '{"blur": {"nosuch": 1}}', named="nosuch"),
    case("compare", "--downsample", "max,nosuch", named="nosuch"),
    case("compare", "--downsample", "max,max", named="max"),
    case("compare", "--downsample", ",", named="--downsample"),
    case("compare", "--methods", "max,,blur", named="max,,blur"),
    case("compare", named="--downsample"),
    case("compare", "--downsample", "max", "--protocol", "nosuch", named="nosuch"),
    case("compare", "--downsample", "max", "--metrics", "nosuch", named="nosuch"),
    case("compare", "--downsample", "max", "--metrics", ",", named="metrics"),
    case("compare", "--downsample", "max", "--figures=x", named="x"),
    case("compare", "--downsample", "max", "--model-options", "channels='16 32 64'",
         "--model", "simple_cnn", named="channels"),
    case("compare", "--downsample", "max,blur", "--model", "simple_cnn", "--method-options",
         '{"blur": {"filter_size": 0}}', named="filter_size"),
    # the robustness options: refused before any training, naming the flag or key
    case("compare", "--downsample", "max", "--metrics", "adversarial", "--eps", "-1/255",
         named="--eps"),
    case("compare", "--downsample", "max", "--metrics", "adversarial", "--eps", "nan",
         named="nan"),
    case("compare", "--downsample", "max", "--metrics", "adversarial", "--eps", "1/0",
         named="1/0"),
    case("compare", "--downsample", "max", "--metrics", "adversarial", "--steps", "0",
         named="--steps"),
    case("compare", "--downsample", "max", "--metrics", "adversarial", "--step-size", "0",
         named="--step-size"),
    case("compare", "--downsample", "max", "--metrics", "adversarial", "--restarts", "0",
         named="--restarts"),
    case("compare", "--downsample", "max", "--metrics", "adversarial", "--eot", "-1",
         named="--eot"),
    case("compare", "--downsample", "max", "--metrics", "adversarial", "--attack", "cw",
         named="cw"),
    case("compare", "--downsample", "max", "--metrics", "adversarial", "--norm", "l1",
         named="l1"),
    case("compare", "--downsample", "max", "--metrics", "corruption", "--corruptions", "rain",
         named="rain"),
    case("compare", "--downsample", "max", "--metrics", "corruption", "--corruptions",
         "noise,nosuch", named="nosuch"),
    case("compare", "--downsample", "max", "--metrics", "corruption", "--severities", "0,6",
         named="--severities"),
    case("compare", "--downsample", "max", "--metrics", "flip_rate", "--perturbations", "spin",
         named="spin"),
    case("compare", "--downsample", "max", "--metrics", "flip_rate", "--frames", "1",
         named="--frames"),
    case("compare", "--downsample", "max", "--eps", "8/255", named="--eps"),
    case("compare", "--config", "{cfg}", named="eps",
         yaml="methods: [max]\neval_metrics: [adversarial]\neps: [0.1, .nan]\n"),
    case("compare", "--config", "{cfg}", named="severities",
         yaml="methods: [max]\neval_metrics: [corruption]\nseverities: [7]\n"),
    case("train", "--model", "simple_cnn", "--model-options", "channels=[16,0,64]",
         named="channels"),
    case("train", "--model", "simple_cnn", "--model-options", "pool_stride=0",
         named="pool_stride"),
    case("train", "--downsample", "blur", "--downsample-options", "filter_size=0",
         named="filter_size"),
]

BENCHMARK = [
    case("benchmark", "--", "--threads", "0", named="--threads"),
    case("benchmark", "--", "--num-threads", "-1", named="--threads"),
    case("benchmark", "--", "--warmup", "-1", named="--warmup"),
    case("benchmark", "--", "--repeats", "0", named="--repeats"),
    case("benchmark", "--", "--noise", "nan", named="--noise"),
    case("benchmark", "--", "--noise", "-1", named="--noise"),
    case("benchmark", "--", "--shape", "1,2,3", named="1,2,3"),
    case("benchmark", "--", "--shape", "a,b,c,d", named="a,b,c,d"),
    case("benchmark", "--", "--shape", "0,1,2,2", named="0,1,2,2"),
    case("benchmark", "--", "--op", "nosuch", named="nosuch"),
    case("benchmark", "--", "--dtype", "fp64", named="fp64"),
    case("benchmark", "--", "--format", "nosuch", named="nosuch"),
    case("benchmark", "--", "--only-extra-shapes", named="--shape"),
    case("benchmark", "--", "--bogus", named="--bogus"),
    case("benchmark", "--threads", "x", named="x"),
    case("benchmark", "robustness", "--steps", "0", named="--steps"),
    case("benchmark", "robustness", "--severities", "0", named="--severities"),
    case("benchmark", "--", "robustness", "--corruptions", "rain", named="rain"),
]

# --task: a segmentation run needs a segmentation model and set; a checkpoint's task is checked.
SEGMENTATION = [
    case("train", "--task", "segment", named="segment"),
    case("train", "--config", "{cfg}", named="detection", yaml="task: detection\n"),
    case("train", "--task", "segmentation", named="resnet20"),
    case("train", "--task", "segmentation", "--model", "simple_cnn", "--dataset",
         "mnist-canvas", named="simple_cnn"),
    case("train", "--model", "unet", named="unet"),
    case("train", "--task", "segmentation", "--model", "unet", named="cifar10"),
    case("train", "--task", "segmentation", "--model", "unet", "--dataset", "mnist-canvas",
         "--augment", "max_shift=2", named="max_shift"),
    case("train", "--task", "segmentation", "--model", "unet", "--dataset", "mnist-canvas",
         "--augment", "scale=[1.5,0.5]", named="scale"),
    case("train", "--task", "classification", "--dataset", "mnist-canvas", named="mnist-canvas"),
    case("train", "--task", "segmentation", "--model", "unet", "--dataset", "mnist-canvas",
         "--eval-metrics", "accuracy", named="eval_metrics"),
    case("evaluate", "{ckpt}", "--task", "segmentation", named="--task"),
    case("evaluate", "{ckpt}", "--task", "nosuch", named="nosuch"),
    case("segment", "--epochs", "0", named="--epochs"),
    case("segment", "--downsample", "nosuch", named="nosuch"),
    case("segment", "--device", "tpu", named="tpu"),
    case("segment", "--seeds", "0,x", named="--seeds"),
    case("segment", "--seed", "1", "--seeds", "0,1", named="--seeds"),
    case("segment", "--downsample", "aps,max", "--baseline", "blur", named="blur"),
    case("compare", "--task", "segmentation", "--downsample", "max", named="resnet20"),
]

OTHERS = [
    case("nosuch", named="nosuch"),
    case(named="COMMAND"),
    case("list", "--bogus", named="--bogus"),
    case("list", "extra", named="extra"),
    case("train", "--bogus", "1", named="--bogus"),
    case("train", "--epoch", "3", named="--epoch"),
    case("homogeneity", "--config", named="--config"),
]

CASES = [*TRAIN_FIELDS, *COMPARE_FIELDS, *PATHS, *DEVICES, *CONFIG_FILES, *EVALUATE,
         *HOMOGENEITY, *EXPORT, *COMPARE, *BENCHMARK, *SEGMENTATION, *OTHERS]


def test_the_table_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 150
    commands = {c.argv[0] for c in CASES if c.argv}
    assert {"train", "evaluate", "compare", "homogeneity", "benchmark", "export",
            "list"} <= commands


@pytest.fixture
def places(tmp_path: Path, checkpoint: Path) -> dict[str, str]:
    """The real files and folders the rows refer to."""
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint, not a folder\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01model: x\n")
    texts = {"yamltext": "epochs: 3\nlr: 0.1\n", "passwd": "root:x:0:0:root:/root:/bin/sh\n",
             "word": "hello\n"}
    for name, content in texts.items():
        (tmp_path / f"{name}.pt").write_text(content)
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    return {"ckpt": str(checkpoint), "text": str(text), "dir": str(folder),
            "binary": str(binary), "readonly": str(readonly),
            **{name: str(tmp_path / f"{name}.pt") for name in texts}}


def _fill(text: str, places: dict[str, str]) -> str:
    for key, value in places.items():
        text = text.replace("{" + key + "}", value)
    return text


@pytest.mark.parametrize("bad", [c.param() for c in CASES])
def test_bad_input_is_one_clear_line_and_exit_2(bad: Case, places: dict[str, str], no_work: Path,
                                                run) -> None:
    if bad.yaml is not None:
        config = no_work / "config.yaml"
        config.write_text(_fill(bad.yaml, places))
        places = {**places, "cfg": str(config)}
    argv = [_fill(a, places) for a in bad.argv]
    status, _, err = run(*argv)
    lines = err.splitlines()
    assert status == 2, (status, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err
    command = argv[0] if argv and not argv[0].startswith("-") else ""
    assert lines[0].startswith(f"shiftpool {command}".strip() + ": error: ") or \
        lines[0].startswith("shiftpool: error: "), lines[0]
    named = _fill(bad.named, places)
    variants = {named, named.replace("_", "-"), named.replace("-", "_")}
    assert any(v in lines[0] for v in variants), f"{named!r} not in: {lines[0]}"
