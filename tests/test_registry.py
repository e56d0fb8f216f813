"""Tests that grow with the registry: every registered trainer has method data and a demo config, and its
demo config trains a step and evaluates in every precision it supports. A new method is covered by adding
its trainer and its config folder; nothing here names a trainer."""
import os

import pytest
import torch

import train  # noqa: F401  (registers trainers and datasets)
from datasets import synthetic_world
from engine.trainer import TRAINER_REGISTRY
from meta.methods import PRECISION_MODES, all_methods, method_of, precision_opts
from tests.helpers import assert_unchanged, frozen_state, run_train, train_on_batch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CLIP = os.path.join(REPO, "data", "demo_clip", "synthetic_clip.pt")
CASES = [(m.trainer, mode) for m in all_methods().values() for mode in m.precision_modes]


def test_every_registered_trainer_has_method_data_and_a_demo_config():
    for name in TRAINER_REGISTRY.registered_names():
        method = method_of(name)
        assert method is not None, f"{name} is registered but has no configs/trainers/{name}/method.yaml"
        assert os.path.isfile(method.demo_config), f"{name}: {method.demo_config} is missing"
        assert TRAINER_REGISTRY.get(method.trainer) is TRAINER_REGISTRY.get(name)


def test_every_method_data_names_a_registered_trainer():
    for method in all_methods().values():
        for name in (method.trainer, *method.aliases):
            assert name in TRAINER_REGISTRY, f"{method.folder}/method.yaml names {name}, which is not registered"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes"))
    synthetic_world.write_benchmark(root, counts=(2, 1, 2))
    return root


def _build(trainer, mode, root, out):
    opts = ["DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "1",
            "TRAIN.SAVE_RESUME_STATE", "False", "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
            *precision_opts(TRAINER_REGISTRY.get(trainer).config_node, mode)]
    method = method_of(trainer)
    return run_train(["--root", root, "--trainer", trainer, "--output-dir", out, "--seed", "1", "--no-train",
                      "--dataset-config-file", os.path.join(REPO, "configs/datasets/synthetic_shapes.yaml"),
                      "--config-file", method.demo_config, "MODEL.BACKBONE.PATH", DEMO_CLIP, *opts])


@pytest.mark.parametrize("trainer,mode", CASES, ids=[f"{t}-{m}" for t, m in CASES])
def test_demo_config_trains_and_evaluates(trainer, mode, demo_root, tmp_path, one_torch_thread):
    built = _build(trainer, mode, demo_root, str(tmp_path / "run"))
    model = built.model
    # the storage each mode promises: fp16 = OpenAI's fp16 weights, fp32/amp = fp32 (amp: fp32 master prompts)
    expected = torch.float16 if built.clip_precision == "fp16" else torch.float32
    assert model.image_encoder.dtype == expected and model.text_encoder.dtype == expected
    frozen = frozen_state(model)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if built.get_model_names():  # something to train
        assert trainable, f"{trainer} registers a module but has no trainable parameter"
        before = {n: p.detach().clone() for n, p in trainable.items()}
        losses = train_on_batch(built, next(iter(built.train_loader_x)), 2)
        assert all(torch.isfinite(torch.tensor(losses))), losses
        changed = any(not torch.equal(before[n], p) for n, p in trainable.items())
        # under fp16 autocast the loss scaler may skip the first steps (overflow at its initial scale)
        assert changed or built.skipped_steps == 2, "a step changed no prompt"
        if PRECISION_MODES[mode][0] == "amp":  # fp32 master weights under autocast
            assert all(p.dtype == torch.float32 for p in trainable.values())
    accuracy = built.test()
    assert 0.0 <= accuracy <= 100.0
    with torch.no_grad():
        images = next(iter(built.test_loader))["img"].to(built.device)
        logits = built.model_inference(images)
    assert logits.shape == (images.shape[0], built.num_classes) and torch.isfinite(logits).all()
    assert_unchanged(model, frozen)
