"""Helpers for the tests: toy data (from tools/toy.py) and train.py command lines."""
import os

from tools.toy import CLASSES, make_caltech, make_tiny_clip  # noqa: F401


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
    import torch

    return torch.load(os.path.join(out, f"logits_{split}.pt"), weights_only=False)
