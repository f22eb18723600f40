"""DDP under torchrun: two CPU processes (gloo) train on their own shards and agree."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from shiftpool.train import load_checkpoint
from shiftpool.train.checkpoint import LAST

WORKER = textwrap.dedent("""
    import os, sys
    import torch
    from shiftpool.train import TrainConfig, train

    result = train(TrainConfig.from_yaml(sys.argv[1]))
    rank = int(os.environ["RANK"])
    torch.save({"model": result.model.state_dict(), "history": result.history,
                "checkpoint": str(result.checkpoint)}, os.path.join(sys.argv[2], f"rank{rank}.pt"))
""")


@pytest.mark.slow
def test_two_process_torchrun_trains_and_ranks_agree(tiny_config, tmp_path) -> None:
    config = tiny_config.replace(train_subset=3000, lr=0.2, out_dir=str(tmp_path / "ddp"))
    config_path, script = tmp_path / "ddp.yaml", tmp_path / "worker.py"
    config.to_yaml(config_path)
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", str(script), str(config_path), str(tmp_path)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in ranks[0]["model"].items():
        assert torch.equal(value, ranks[1]["model"][key]), f"ranks disagree on {key}"
    # Only rank 0 writes; its checkpoint holds the weights both ranks ended with.
    assert ranks[0]["checkpoint"] != "None" and ranks[1]["checkpoint"] == "None"
    saved = load_checkpoint(tmp_path / "ddp" / LAST)
    assert saved["world_size"] == 2 and len(saved["rng"]) == 2
    for key, value in ranks[0]["model"].items():
        assert torch.equal(saved["model"][key], value)
    # Each rank trained on 1,500 of the 3,000 images: 30 steps of 50 per epoch.
    history = ranks[0]["history"]
    assert len(history) == 2 and history[0]["images_per_s"] > 0
    assert history[-1]["test_acc"] > 0.5, history  # chance: 0.1
