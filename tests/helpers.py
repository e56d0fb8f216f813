"""Helpers for the tests: a tiny random CLIP, the learnable fake Caltech101 (tests/datasets/fakes.py) and
train.py command lines."""
import os

import torch

from tests.datasets.fakes import CLASSES, make_caltech  # noqa: F401  (re-exported: the tests' Caltech101)


def make_tiny_clip(path, vit=True, width=64, layers=2, embed_dim=32, image_size=32, patch_size=8, seed=0,
                   vision_width=None):
    """Save a random CLIP state dict with OpenAI's key names (heads = width // 64, as OpenAI infers)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(seed)
    vision = (CLIPVisionCfg(layers=layers, width=vision_width or width, patch_size=patch_size,
                            image_size=image_size) if vit else
              CLIPVisionCfg(layers=(1, 1, 1, 1), width=width // 2, image_size=image_size, head_width=width))
    model = CLIP(embed_dim, vision_cfg=vision,
                 text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=width, heads=max(1, width // 64),
                                      layers=layers), quick_gelu=True)
    sd = model.state_dict()
    g = torch.Generator().manual_seed(seed)
    for k, v in sd.items():  # non-trivial LayerNorm/bias values so mistakes in their use show up
        if v.is_floating_point() and ("ln" in k or "bias" in k) and v.dim() == 1:
            v.add_(0.1 * torch.randn(v.shape, generator=g))
    sd["logit_scale"] = torch.tensor(4.6052)
    torch.save(sd, path)
    return path


def coop_args(root, clip_path, out, *extra, trainer="CoOp", epochs=2, seed=1, config="vit_b32.yaml"):
    """A CoOp-family command line for the tiny CLIP and the tiny Caltech101 (fp32, 32x32 images)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args = ["--root", root, "--trainer", trainer, "--output-dir", out, "--seed", str(seed),
            "--dataset-config-file", os.path.join(repo, "configs/datasets/caltech101.yaml")]
    if config:
        args += ["--config-file", os.path.join(repo, "configs/trainers", trainer if trainer != "ZeroshotCLIP2"
                                               else "CoOp", config)]
    return args + ["MODEL.BACKBONE.NAME", "custom", "MODEL.BACKBONE.PATH", clip_path, "INPUT.SIZE", "(32, 32)",
                   "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "OPTIM.MAX_EPOCH",
                   str(epochs), "TRAIN.PRINT_FREQ", "1", *extra]


def run_train(args):
    """Run train.py in this process; returns the trainer."""
    import train

    return train.run(args)


def with_flags(args, *flags):
    """Insert train.py flags before the trailing KEY VALUE options of ``args``."""
    i = args.index("MODEL.BACKBONE.NAME")
    return args[:i] + list(flags) + args[i:]


def saved_logits(out, split="test"):
    """The logits a run wrote with TEST.SAVE_LOGITS True."""
    return torch.load(os.path.join(out, f"logits_{split}.pt"), weights_only=False)


def train_on_batch(trainer, batch, steps):
    """``steps`` training steps on one batch; returns the losses (the scheduler is not stepped)."""
    trainer.set_model_mode("train")
    trainer.epoch, trainer.num_batches = 0, 10 ** 6
    losses = []
    for trainer.batch_idx in range(steps):
        losses.append(trainer.forward_backward(batch)["loss"])
    return losses


def frozen_state(model, trainable_prefix="prompt_learner"):
    """Copies of every tensor outside the trainable module, to check training leaves them bit-identical."""
    return {k: v.clone() for k, v in model.state_dict().items() if trainable_prefix not in k}


def assert_unchanged(model, frozen):
    for k, v in model.state_dict().items():
        if k in frozen:
            assert torch.equal(v, frozen[k]), k


def kill_then_resume(args, monkeypatch, kill_epoch=1):
    """Run train.py killed at the start of epoch ``kill_epoch`` (0-based), then rerun the same command."""
    import pytest

    from engine.trainer import TrainerX

    real = TrainerX.run_epoch

    def die(self):
        if self.epoch == kill_epoch:
            raise KeyboardInterrupt("killed")
        real(self)

    monkeypatch.setattr(TrainerX, "run_epoch", die)
    with pytest.raises(SystemExit):  # SIGINT: one line, exit 130
        run_train(args)
    monkeypatch.setattr(TrainerX, "run_epoch", real)
    return run_train(args)


def small_open_clip_config(base, context_length=None):
    """open_clip's model config ``base`` (e.g. "ViT-B-16", "RN50"), shrunk to test size: every other setting
    (activation, pooling, ...) stays the config's."""
    import open_clip

    cfg = open_clip.get_model_config(base)
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    cfg["embed_dim"] = 32
    if isinstance(vision["layers"], (list, tuple)):  # ModifiedResNet: 32 * width channels, 1x1 attention pool
        vision.update(layers=[1, 1, 1, 1], width=8, head_width=32, image_size=32)
    else:
        vision.update(layers=2, width=64, head_width=32, patch_size=8, image_size=32)
    text.update(width=64, heads=2, layers=2, **({"context_length": context_length} if context_length else {}))
    return cfg


def register_open_clip_config(name, cfg):
    """Add ``cfg`` to open_clip's model-config registry as ``name``; returns a function that removes it."""
    from open_clip import factory

    factory._MODEL_CONFIGS[name] = cfg
    return lambda: factory._MODEL_CONFIGS.pop(name, None)


def save_open_clip_checkpoint(name, path, seed=0, **kwargs):
    """A random open_clip model of the registered config ``name``, saved as an open_clip checkpoint (with
    non-trivial LayerNorm/bias values, as ``make_tiny_clip``)."""
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.create_model(name, **kwargs)
    sd = model.state_dict()
    g = torch.Generator().manual_seed(seed)
    for k, v in sd.items():
        if v.is_floating_point() and ("ln" in k or "bias" in k) and v.dim() == 1:
            v.add_(0.1 * torch.randn(v.shape, generator=g))
    torch.save({"state_dict": sd, "epoch": 1}, path)  # open_clip's training checkpoints wrap the state dict
    return path
