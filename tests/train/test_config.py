"""TrainConfig: validation, type coercion, dict and YAML round trips."""

from __future__ import annotations

import dataclasses

import pytest

from shiftpool.train.config import (
    FIELD_HELP,
    TrainConfig,
    coerce_field,
    field_names,
    parse_mapping,
    parse_scalar,
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


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer": "adam"}, "optimizer must be one of sgd, adamw"),
        ({"amp": "fp8"}, "amp must be one of auto, off, bf16, fp16"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"batch_size": "many"}, "batch_size expects int"),
        ({"nesterov": "maybe"}, "nesterov expects bool"),
    ],
)
def test_bad_values_name_the_field(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_command_line_strings_are_coerced() -> None:
    config = TrainConfig(epochs="4", lr="0.5", nesterov="false", train_subset="none",
                         eval_metrics="accuracy, msb", downsample_options="filter_size=5")
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
