"""TrainConfig: validation, type coercion, dict and YAML round trips."""

from __future__ import annotations

import dataclasses

import pytest

from shiftpool.core.errors import InputError
from shiftpool.metrics import METRICS
from shiftpool.train.config import (
    FIELD_HELP,
    TrainConfig,
    coerce_field,
    field_names,
    parse_mapping,
    parse_scalar,
    read_yaml_mapping,
    split_top_level,
)


def test_every_field_has_help_text() -> None:
    assert set(FIELD_HELP) == set(field_names())


def test_dict_round_trip_keeps_every_field() -> None:
    config = TrainConfig(model="simple_cnn", downsample="blur",
                         downsample_options={"filter_size": 5},
                         augment={"crop_padding": 4, "flip": True}, eval_metrics=["accuracy"],
                         train_subset=100, grad_clip=1.5, optimizer="adamw", schedule="cosine")
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_yaml_round_trip_through_file(tmp_path) -> None:
    pytest.importorskip("yaml")
    config = TrainConfig(epochs=3, lr=0.01, amp="bf16", model_options={"width": 32})
    path = tmp_path / "run.yaml"
    text = config.to_yaml(path)
    assert path.read_text() == text
    assert TrainConfig.from_yaml(path) == config


def test_from_dict_accepts_dashed_keys() -> None:
    assert TrainConfig.from_dict({"batch-size": 32}).batch_size == 32


def test_unknown_key_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) epoch;.*epochs"):
        TrainConfig.from_dict({"epoch": 3})


BAD_VALUES = [
    ({"optimizer": "adam"}, "optimizer must be one of sgd, adamw"),
    ({"amp": "fp8"}, "amp must be one of auto, off, bf16, fp16"),
    ({"schedule": "step"}, "schedule must be one of"),
    ({"device": "tpu"}, "device must be one of auto, cpu, cuda"),
    ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
    ({"batch_size": -1}, "batch_size must be an integer >= 1, got -1"),
    ({"eval_batch_size": 0}, "eval_batch_size must be an integer >= 1, got 0"),
    ({"train_subset": 0}, "train_subset must be an integer >= 1, got 0"),
    ({"eval_max_images": -3}, "eval_max_images must be an integer >= 1, got -3"),
    ({"lr": 0.0}, r"lr must be in \(0.0, inf\], got 0.0"),
    ({"lr": "nan"}, "lr must be a finite number, got nan"),
    ({"lr": "inf"}, "lr must be a finite number, got inf"),
    ({"lr": -0.1}, "lr must be in"),
    ({"momentum": "nan"}, "momentum must be a finite number, got nan"),
    ({"momentum": 1.0}, r"momentum must be in \[0.0, 1.0\), got 1.0"),
    ({"momentum": -0.5}, "momentum must be in"),
    ({"weight_decay": -1e-4}, r"weight_decay must be in \[0.0, inf\], got -0.0001"),
    ({"weight_decay": float("inf")}, "weight_decay must be a finite number"),
    ({"grad_clip": -1}, r"grad_clip must be in \(0.0, inf\], got -1.0"),
    ({"grad_clip": 0}, r"grad_clip must be in \(0.0, inf\], got 0.0"),
    ({"grad_clip": "nan"}, "grad_clip must be a finite number"),
    ({"warmup_epochs": -1}, r"warmup_epochs must be in \[0.0, inf\], got -1.0"),
    ({"warmup_epochs": 10}, r"warmup_epochs must be in \[0, epochs=10\), got 10.0"),
    ({"warmup_epochs": "nan"}, "warmup_epochs must be a finite number"),
    ({"pct_start": 0.0}, "pct_start must be in"),
    ({"pct_start": "nan"}, "pct_start must be a finite number"),
    ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0.0, 1.0\), got 1.0"),
    ({"label_smoothing": "nan"}, "label_smoothing must be a finite number"),
    ({"tips_alpha": 1.5}, "tips_alpha must be in"),
    ({"tips_alpha": "inf"}, "tips_alpha must be a finite number"),
    ({"tips_fm_weight": -1.0}, "tips_fm_weight must be"),
    ({"tips_undo_start_epoch": -1}, "tips_undo_start_epoch must be an integer >= 0, got -1"),
    ({"lps_tau_start": 0}, r"lps_tau_start must be in \(0.0, inf\]"),
    ({"lps_tau_end": "nan"}, "lps_tau_end must be a finite number"),
    ({"seed": -1}, r"seed must be an integer in \[0, 9223372036854775807\], got -1"),
    ({"seed": 2**63}, "seed must be an integer in"),
    ({"num_threads": 0}, "num_threads must be an integer >= 1, got 0"),
    ({"num_threads": -1}, "num_threads must be an integer >= 1, got -1"),
    ({"eval_every": -1}, "eval_every must be an integer >= 0, got -1"),
    ({"eval_protocol": "nosuch"}, "eval_protocol must be one of aps, tips, zhang; got 'nosuch'"),
    ({"eval_metrics": "nosuch"}, "eval_metrics must be one of accuracy, .*, all; got 'nosuch'"),
    ({"eval_metrics": ","}, "eval_metrics must name at least one metric .*got an empty list"),
    ({"eval_metrics": []}, "eval_metrics must name at least one metric"),
    ({"model": "resnet21"}, "model must be one of .*resnet20.*; got 'resnet21'"),
    ({"downsample": "maxx"}, "downsample must be one of aps, .*; got 'maxx'"),
    ({"downsample": "blur", "downsample_options": "size=3"},
     "downsample_options of downsample 'blur' must be among filter_size, padding, got size"),
    ({"model_options": "depth=3"},
     "model_options of model 'resnet20' must be among width, got depth"),
    ({"augment": "crop=4"},
     r"augment \(shiftpool.data.Augment fields\) must be among crop_padding"),
    ({"augment": "crop_padding=-1"}, "augment crop_padding must be an integer >= 0, got -1"),
    ({"augment": "flip=maybe"}, "augment flip must be"),
    ({"dataset": " "}, "dataset: unknown data set ' '; available: cifar10"),
    ({"dataset": "cifar"}, "dataset: unknown data set 'cifar'; available: cifar10, .*folder"),
    ({"dataset": "folder:/x?size=abc"}, "dataset: image folder option size='abc'"),
    ({"out_dir": ""}, "out_dir must be a folder path"),
    ({"batch_size": "many"}, "batch_size expects int"),
    ({"nesterov": "maybe"}, "nesterov expects bool"),
    ({"model_options": "channels=[16,32"}, "model_options: missing closing ']'"),
    ({"downsample_options": "filter_size=3,filter_size=5"},
     "downsample_options: key 'filter_size' is given twice"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_VALUES)
def test_bad_values_are_refused_in_one_line_naming_the_field(changes: dict, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        TrainConfig(**changes)
    text = str(info.value)
    assert text.startswith("shiftpool.train: ") and "\n" not in text


def test_a_folder_data_set_is_looked_for_when_loaded_not_in_the_config(tmp_path) -> None:
    """A checkpoint's config stays readable where its training folder is gone."""
    assert TrainConfig(dataset=f"folder:{tmp_path}/gone").dataset == f"folder:{tmp_path}/gone"


def test_replace_is_validated_too() -> None:
    with pytest.raises(InputError, match="grad_clip"):
        TrainConfig().replace(grad_clip=-1.0)


def test_edge_values_that_are_allowed() -> None:
    config = TrainConfig(momentum=0.0, weight_decay=0.0, warmup_epochs=9.5, epochs=10,
                         seed=2**63 - 1, eval_every=0, grad_clip=1e-9, label_smoothing=0.0)
    assert (config.seed, config.grad_clip) == (2**63 - 1, 1e-9)


def test_all_metrics_expand_and_duplicates_collapse() -> None:
    assert TrainConfig(eval_metrics="all").eval_metrics == list(METRICS)
    assert TrainConfig(eval_metrics="msb,accuracy,msb").eval_metrics == ["msb", "accuracy"]


def test_lists_are_expressible_in_the_command_line_form() -> None:
    config = TrainConfig(model="simple_cnn", model_options="channels=[16,32,64],head=fc")
    assert config.model_options == {"channels": [16, 32, 64], "head": "fc"}
    # a quoted string stays a string: the model, not the parser, judges it
    assert parse_mapping("channels='16 32 64'") == {"channels": "16 32 64"}
    assert parse_mapping("a=[x, 'y, z'],b={c: 1, d=[2]}") == {"a": ["x", "y, z"],
                                                             "b": {"c": 1, "d": [2]}}
    assert parse_mapping('{"a": [1, 2]}') == {"a": [1, 2]}
    assert split_top_level("a=(1,2),b=') ,'") == ["a=(1,2)", "b=') ,'"]
    for bad in ("a=[1,2", "a=1]", "a=1,,b=2", "=3", "a=[1,,2]"):
        with pytest.raises(InputError):
            parse_mapping(bad)


def test_yaml_duplicate_keys_and_bad_yaml_are_one_line_errors(tmp_path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 2\nlr: 0.1\nepochs: 3\n")
    with pytest.raises(InputError, match=r"run.yaml.*key 'epochs' is given twice \(line 3\)"):
        TrainConfig.from_yaml(path)
    cases = {
        "lr: [0.1\n": "is not valid YAML: .*line 2",
        "a: !!python/object/apply:os.system ['echo pwned']\n": "not valid YAML: could not "
                                                              "determine a constructor",
        "- 1\n- 2\n": "must be a mapping of option: value, got list",
    }
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(InputError, match=message) as info:
            read_yaml_mapping(path)
        assert "\n" not in str(info.value)
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(InputError, match=r"cannot read config file .*not UTF-8"):
        read_yaml_mapping(path)


def test_command_line_strings_are_coerced() -> None:
    config = TrainConfig(epochs="4", lr="0.5", nesterov="false", train_subset="none",
                         eval_metrics="accuracy, msb", downsample="blur",
                         downsample_options="filter_size=5")
    assert (config.epochs, config.lr, config.nesterov, config.train_subset) == (4, 0.5, False, None)
    assert config.eval_metrics == ["accuracy", "msb"]
    assert config.downsample_options == {"filter_size": 5}


def test_parse_helpers() -> None:
    assert [parse_scalar(v) for v in ("3", "-2.5", "True", "null", "zero")] == [3, -2.5, True, None,
                                                                               "zero"]
    assert parse_mapping('{"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(ValueError, match="key=value"):
        parse_mapping("filter_size")
    assert coerce_field("seed", 7.0) == 7
    with pytest.raises(ValueError, match="seed expects int"):
        coerce_field("seed", 7.5)


def test_result_fields_leave_out_paths_and_logging() -> None:
    a = TrainConfig(out_dir="a", progress=True)
    b = dataclasses.replace(a, out_dir="b", progress=False, num_threads=1)
    assert a.result_fields() == b.result_fields()
    assert a.result_fields() != a.replace(seed=1).result_fields()


def test_task_field_checks_model_data_set_and_augment_against_it() -> None:
    config = TrainConfig(task="segmentation", model="unet", dataset="mnist-canvas",
                         augment={"crop_padding": 2, "flip": True, "scale": [0.5, 2]})
    assert TrainConfig.from_yaml(config.to_yaml()) == config
    assert config.result_fields()["task"] == "segmentation"
    with pytest.raises(InputError, match=r"model 'resnet20' is a classification model; task "
                                         r"segmentation takes one of .*unet"):
        TrainConfig(task="segmentation", dataset="mnist-canvas")
    with pytest.raises(InputError, match="model 'unet' is a segmentation model"):
        TrainConfig(model="unet")
    with pytest.raises(InputError, match=r"dataset of task segmentation: unknown segmentation "
                                         r"data set 'cifar10'; available: .*mnist-canvas"):
        TrainConfig(task="segmentation", model="unet")
    with pytest.raises(InputError, match="unknown data set 'mnist-canvas'"):
        TrainConfig(dataset="mnist-canvas")
    with pytest.raises(InputError, match="augment of task segmentation must be among "
                                         "crop_padding, flip, scale, got max_shift"):
        config.replace(augment={"max_shift": 2})
    for bad in ({"scale": [2, 1]}, {"scale": 1.5}, {"flip": "yes"}, {"crop_padding": -1}):
        with pytest.raises(InputError, match="augment"):
            config.replace(augment=bad)
    with pytest.raises(InputError, match="task must be one of classification, segmentation"):
        TrainConfig(task="detection")
    with pytest.raises(InputError, match="eval_metrics names classification metrics"):
        config.replace(eval_metrics=["accuracy"])


def test_classification_rows_keep_their_result_fields() -> None:
    """Checkpoints and compare rows saved before the task field existed still match."""
    config = TrainConfig()
    assert config.to_dict()["task"] == "classification"
    assert "task" not in config.result_fields()
    saved = {k: v for k, v in config.to_dict().items() if k != "task"}
    assert TrainConfig.from_dict(saved) == config
