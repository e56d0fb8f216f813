#!/usr/bin/env python
"""A shareable prompt bundle of a training run (issue 18).

    python tools/export.py OUT --load-epoch N -o bundle.pt [--classnames FILE] [-- KEY VALUE ...]

One small file with the learned tensors (the trainer's checkpoint tensors without those rebuilt from the
class names; no CLIP weights), the resolved config, the trainer and backbone names, the SHA-256 of the CLIP
weights file the run was trained on (as its checkpoints record it; for runs that predate the record, of the
file the config names now) and the class names. ``predict.py --model-dir bundle.pt`` and
``train.py --eval-only --model-dir bundle.pt`` take it directly and refuse it on other CLIP weights.
``KEY VALUE`` options after ``--`` override the saved config (e.g. ``MODEL.BACKBONE.PATH`` where the weights
are on this machine); ``--classnames`` is needed only for checkpoints that do not name their classes.
"""
import argparse
import contextlib
import os
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import predict  # noqa: E402
from engine.bundle import write_bundle  # noqa: E402
from engine.checkpoint import saved_run_facts  # noqa: E402
from engine.config import get_cfg_default  # noqa: E402
from engine.utils.tools import UserError  # noqa: E402


def export(run_dir, load_epoch, out, classnames=None, opts=()):
    """Write the bundle of ``run_dir`` at ``load_epoch`` to ``out``; returns its path."""
    if not os.path.isdir(run_dir):
        raise UserError(f"{run_dir} is not a training run's output folder")
    predictor = predict.load_predictor(run_dir, load_epoch, classnames, opts=opts)
    trainer, cfg = predictor.trainer, predictor.cfg
    recorded = saved_run_facts(run_dir, load_epoch)["clip_sha256"]
    if recorded is not None and recorded != trainer.clip_sha256:
        raise UserError(f"{run_dir} was trained on CLIP weights with SHA-256 {recorded} but MODEL.BACKBONE.PATH "
                        f"now gives {trainer.clip_sha256}; point MODEL.BACKBONE.PATH at the weights it was trained on")
    config = yaml.safe_load(cfg.dump())
    defaults = get_cfg_default()  # this machine's folders are no use elsewhere (a bundle's run writes its own)
    config["OUTPUT_DIR"], config["DATASET"]["ROOT"] = defaults.OUTPUT_DIR, defaults.DATASET.ROOT
    return write_bundle(out, trainer=cfg.TRAINER.NAME, backbone=cfg.MODEL.BACKBONE.NAME,
                        clip_sha256=recorded or trainer.clip_sha256, config=config,
                        classnames=predictor.classnames, epoch=load_epoch, state_dicts=trainer.bundle_state_dicts())


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = argv[argv.index("--") + 1:] if "--" in argv else []
    p = argparse.ArgumentParser(prog="tools/export.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("run_dir", help="a training run's output folder")
    p.add_argument("--load-epoch", type=int, required=True, help="the checkpoint epoch to export")
    p.add_argument("-o", "--out", required=True, help="the bundle file to write (e.g. bundle.pt)")
    p.add_argument("--classnames", help="class names, one per line (only for checkpoints that do not name them)")
    p.add_argument("--verbose", action="store_true", help="show the model building log on stderr")
    args = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    try:
        chatter = contextlib.nullcontext(sys.stderr) if args.verbose else open(os.devnull, "w")
        with chatter as stream, contextlib.redirect_stdout(stream):
            names = predict.read_classnames(args.classnames) if args.classnames else None
            path = export(args.run_dir, args.load_epoch, args.out, names, opts)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"bundle written to {path} ({os.path.getsize(path) / 1024:.1f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
