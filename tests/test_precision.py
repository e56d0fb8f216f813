"""Precision as users run it: PREC fp16 is real fp16 on a CPU too, and a run whose loss turns NaN stops with
one line that says where, why and how to go on, keeping the last complete checkpoint to resume from."""
import os
import re

import pytest
import torch

from datasets import synthetic_world
from tests.helpers import run_train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CLIP = os.path.join(REPO, "data", "demo_clip", "synthetic_clip.pt")


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes"))
    synthetic_world.write_benchmark(root, counts=(2, 1, 2))
    return root


def _align(root, out, *opts, flags=()):
    return ["--root", root, "--trainer", "ALIGN", "--output-dir", out, "--seed", "1", *flags,
            "--dataset-config-file", os.path.join(REPO, "configs/datasets/synthetic_shapes.yaml"),
            "--config-file", os.path.join(REPO, "configs/trainers/ALIGN/demo.yaml"), "MODEL.BACKBONE.PATH", DEMO_CLIP,
            "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "2",
            "TRAINER.MMP.PREC", "fp16", "TEST.SAVE_LOGITS", "True", *opts]


def test_fp16_models_hold_fp16_weights_on_a_cpu(demo_root, tmp_path):
    built = run_train(_align(demo_root, str(tmp_path / "r"), flags=["--no-train"]))
    assert built.model.image_encoder.dtype == torch.float16 and built.model.text_encoder.dtype == torch.float16
    assert built.model.prompt_learner.ctx.dtype == torch.float16  # official: the context in the model's dtype


def test_official_fp16_transport_nan_stops_with_one_line_and_resumes_with_the_fix(demo_root, tmp_path, monkeypatch,
                                                                                     capsys):
    """ALIGN's official fp16 kernels underflow (as upstream computes them): the run stops naming the epoch, the
    precision, the fix and the kept checkpoint; rerunning with the fix resumes from that checkpoint."""
    from engine.trainer import TrainerX

    out = str(tmp_path / "run")
    real = TrainerX.run_epoch

    def stop_at_epoch_2(self):  # a first epoch with the fix, so a complete checkpoint exists
        if self.epoch == 1:
            raise KeyboardInterrupt("killed")
        real(self)

    monkeypatch.setattr(TrainerX, "run_epoch", stop_at_epoch_2)
    with pytest.raises(SystemExit):  # SIGINT: one line, exit 130
        run_train(_align(demo_root, out))
    monkeypatch.setattr(TrainerX, "run_epoch", real)
    capsys.readouterr()  # the interruption's line

    with pytest.raises(SystemExit) as stop:
        run_train(_align(demo_root, out, "TRAINER.MMP.OT_FP32", "False", flags=["--resume-anyway"]))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(r"error: (loss|a gradient) became NaN or inf at epoch 2, batch \d+ ", err[0])
    assert "PREC fp16" in err[0] and "TRAINER.MMP.OT_FP32 True" in err[0]
    kept = os.path.join(out, "MultiModalPromptLearner", "model.pth.tar-1")
    assert kept in err[0] and os.path.isfile(kept)
    last_log = sorted(f for f in os.listdir(out) if f.startswith("log.txt"))[-1]
    assert open(os.path.join(out, last_log)).read().strip().splitlines()[-1] == err[0]

    resumed = run_train(_align(demo_root, out, flags=["--resume-anyway"]))  # the fix: the settings change again
    assert resumed.start_epoch == 1 and torch.isfinite(torch.load(os.path.join(out, "logits_test.pt"))["logits"]).all()
