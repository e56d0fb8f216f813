"""The runs of one protocol for one sweep of the method data (meta.methods): their folders (the CoOp-family
layout), command lines and dependencies. Torch-free; an evaluation's load epoch is resolved on demand.

A sweep with ``stages`` trains each (dataset, shots, seed) as a chain of training runs, one per stage, in
order: stage i's run depends on stage i-1's (``previous``) and may name its folder in its options
(``{previous}``); evaluations load the last stage's model. Each stage has its own config, hence its own
folder ``.../<T>/<stage cfg>/seed<S>``."""
import functools
import os
from dataclasses import dataclass, field

from meta.methods import PREVIOUS_STAGE, all_sweeps, method_of
from meta.protocols import XD_SOURCE
from tools import REPO
from tools.train_config import resolve_config

DEMO_DATASET = "synthetic_shapes"  # the world the demo CLIP was pretrained on (datasets/synthetic_world.py)
DEMO_PROTOCOLS = ("base2new", "few_shot")  # the transfer protocols train on ImageNet


@dataclass
class Run:
    protocol: str            # base2new | few_shot | cross_dataset | domain_gen (where the folder lives)
    kind: str                # "train" or "eval"
    out: str                 # absolute output folder
    root: str                # dataset root (--root)
    trainer: str
    dataset: str
    seed: int
    shots: int
    cfg: str
    config_file: str         # relative to the repository
    opts: list = field(default_factory=list)
    model: "Run" = None      # the training run an eval loads
    out_root: str = ""       # the sweep's OUTPUT
    previous: "Run" = None   # a chained training run: the previous stage's run it starts from
    stage: str = ""          # a chained training run: its stage's name
    flags: list = field(default_factory=list)  # train.py flags not in the signature (--resume-anyway)

    @property
    def depends_on(self):
        """The run that must be done before this one starts (the model of an eval, the previous stage)."""
        return self.model if self.model is not None else self.previous

    @property
    def name(self):
        return os.path.relpath(self.out, self.out_root) if self.out_root else self.out

    @functools.cached_property
    def max_epoch(self):
        """OPTIM.MAX_EPOCH of this run as train.py resolves it (imports train: only when asked)."""
        return resolve_config(self.argv()).OPTIM.MAX_EPOCH

    @property
    def load_epoch(self):
        """The epoch an evaluation loads: the last one of its training run (None without a model)."""
        return self.model.max_epoch if self.model is not None else None

    def argv(self, load_epoch=True):
        """train.py's arguments; ``load_epoch=False`` leaves out ``--load-epoch`` (nothing is resolved)."""
        a = ["--root", self.root, "--seed", str(self.seed), "--trainer", self.trainer,
             "--dataset-config-file", f"configs/datasets/{self.dataset}.yaml", "--config-file", self.config_file,
             "--output-dir", self.out]
        if self.kind == "eval":
            if self.model is not None:
                a += ["--model-dir", self.model.out] + (["--load-epoch", str(self.load_epoch)] if load_epoch else [])
            a.append("--eval-only")
        return a + list(self.flags) + list(self.opts)


def demo_config(sweep):
    """(cfg name, config file relative to the repository): the demo config of the sweep's trainer (its
    method data's ``demo``, as scripts/quickstart.sh and tests/test_demo.py use it)."""
    path = os.path.relpath(method_of(sweep.trainer).demo_config, REPO)
    return os.path.splitext(os.path.basename(path))[0], path


def plan(protocol, sweep_key, datasets, seeds, shots, out_root, root, extra_opts=(), cfg_override=None, demo=False):
    """The runs of a sweep (training runs before the evaluations that load them). ``demo``: every run with the
    trainer's demo config (the offline demo CLIP on SyntheticShapes), one training run per (dataset, shots,
    seed) even for a sweep with stages (the demo config trains the method's last stage from scratch)."""
    sweep = all_sweeps()[sweep_key]
    settings = sweep.settings(protocol)
    base_opts = list(settings.opts)
    extra_opts = list(extra_opts)
    stages = () if demo else sweep.stages
    runs = {}

    def make(kind, sub, dataset, k, seed, opts, model=None, shots_dir=None, folder=protocol, cfg=None, previous=None,
             stage=""):
        if demo:
            cfg, config_file = demo_config(sweep)
        else:
            cfg = cfg or cfg_override or settings.config_for(dataset, k)
            config_file = sweep.config_file(cfg)
        parts = [out_root, folder] + ([sub] if sub else []) + [
            dataset, f"shots_{k if shots_dir is None else shots_dir}", sweep.trainer, cfg, f"seed{seed}"]
        out = os.path.join(*parts)
        run = Run(protocol, kind, out, root, sweep.trainer, dataset, seed, k, cfg, config_file,
                  opts + extra_opts, model, out_root, previous, stage)
        return runs.setdefault(out, run)

    def train(sub, dataset, k, seed, opts, folder=protocol):
        """The training of (dataset, k, seed): one run, or the chain of the sweep's stages (returns the last)."""
        if not stages:
            return make("train", sub, dataset, k, seed, opts, folder=folder)
        previous = None
        for stage in stages:
            stage_seed = seed if stage.seeds is None or seed in stage.seeds else stage.seeds[0]
            stage_opts = [o.replace(PREVIOUS_STAGE, previous.out) if previous is not None else o for o in stage.opts]
            run = make("train", sub, dataset, k, stage_seed, opts + stage_opts, folder=folder, cfg=stage.cfg,
                       previous=previous, stage=stage.name)
            if previous is not None and run.previous is not previous:
                raise ValueError(f"stages of sweep {sweep_key!r} share the folder {run.out}: give each stage its "
                                 "own cfg")
            previous = run
        return previous

    eval_stage_opts = list(stages[-1].eval_opts) if stages else []

    for seed in seeds:
        if protocol == "base2new":
            for d in datasets:
                for k in shots:
                    opts = base_opts + ["DATASET.NUM_SHOTS", str(k)]
                    if sweep.train:
                        tr = train("train_base", d, k, seed, opts + ["DATASET.SUBSAMPLE_CLASSES", "base"])
                        make("eval", "test_new", d, k, seed,
                             opts + eval_stage_opts + ["DATASET.SUBSAMPLE_CLASSES", "new"], tr)
                    else:
                        for sub in ("base", "new"):
                            make("eval", f"test_{sub}", d, k, seed, opts + ["DATASET.SUBSAMPLE_CLASSES", sub])
        elif protocol == "few_shot":
            for d in datasets:
                if not sweep.train:
                    make("eval", None, d, 0, seed, base_opts, shots_dir=0)
                    continue
                for k in shots:
                    train(None, d, k, seed, base_opts + ["DATASET.NUM_SHOTS", str(k)])
        else:  # cross_dataset / domain_gen: one ImageNet model (kept with the cross-dataset runs) per seed
            k = shots[0]
            eval_opts = base_opts + list(settings.eval_opts) + eval_stage_opts
            if sweep.train:
                src = train("train_source", XD_SOURCE, k, seed, base_opts + ["DATASET.NUM_SHOTS", str(k)],
                            folder="cross_dataset")
                for d in datasets:
                    make("eval", "test_target", d, k, seed, eval_opts, src)
            else:
                for d in [XD_SOURCE] + [d for d in datasets if d != XD_SOURCE]:
                    make("eval", "test_target", d, k, seed, eval_opts)
    return list(runs.values())
