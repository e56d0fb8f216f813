#!/usr/bin/env python
"""Experiment sweeps: every run of one protocol for one method, crash-safe and resumable, one after the
other on this machine, spread over local GPUs, or submitted to SLURM.

    python tools/sweep.py PROTOCOL METHOD DATASET [DATASET ...] [options] [-- KEY VALUE ...]
    python tools/sweep.py base2new sep imagenet          # what scripts/sep/base2new.sh imagenet runs
    python tools/sweep.py few_shot coop all --gpus 0,1,2,3
    python tools/sweep.py cross_dataset maple all --slurm --slurm-partition gpu

PROTOCOL is base2new, few_shot, cross_dataset or domain_gen; METHOD a key of METHODS (in this file); DATASET the
name of a yaml in configs/datasets/ or ``all``. The environment variables DATA, OUTPUT, SEEDS, SHOTS,
OPTS, CFG, GPUS and JOBS set the defaults of --root, --output, --seeds, --shots, --opts, --cfg, --gpus
and --jobs (this is how the scripts/<method>/*.sh wrappers are configured).

Per protocol (the CoOp-family layout; <T> = trainer, <cfg> = trainer yaml name, <K> = shots):

    base2new       OUTPUT/base2new/train_base/<dataset>/shots_<K>/<T>/<cfg>/seed<S>   train on base classes
                   OUTPUT/base2new/test_new/<dataset>/shots_<K>/<T>/<cfg>/seed<S>     eval-only, new classes
                   (zero-shot CLIP: test_base/ and test_new/, both eval-only)
    few_shot       OUTPUT/few_shot/<dataset>/shots_<K>/<T>/<cfg>/seed<S>              train on all classes
                   (zero-shot CLIP: shots_0, eval-only)
    cross_dataset  OUTPUT/cross_dataset/train_source/imagenet/shots_16/<T>/<cfg>/seed<S>
                   OUTPUT/cross_dataset/test_target/<dataset>/shots_16/<T>/<cfg>/seed<S>  eval-only
    domain_gen     OUTPUT/domain_gen/test_target/<dataset>/shots_16/<T>/<cfg>/seed<S>     eval-only, with the
                   ImageNet model of cross_dataset/train_source (trained first if missing)

Evaluations load the last epoch of their training run (= its config's MAX_EPOCH). A run counts as done
only when this driver has written ``done.json`` into its folder, which it does after train.py exited 0
and the log it wrote holds the result block. Rerunning a sweep runs only what is not done; a training
run that was killed resumes from its last epoch checkpoint (train.py does that in the same folder). Each
run folder also gets ``sweep.json`` (command, git commit, package versions, host, attempts),
``command.sh``, ``sweep_output.txt`` (the process's stdout and stderr) and ``config.yaml`` (the resolved
config, as train.py printed it into the log).
"""
import argparse
import datetime
import fcntl
import functools
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tools import parse_results  # noqa: E402  (no torch import: fast)

# ----------------------------------------------------------------------------------------------------
# Protocol data: the one place where per-method settings live (from the official scripts; see "source").
# ----------------------------------------------------------------------------------------------------

B2N_DATASETS = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]
XD_SOURCE = "imagenet"
XD_TARGETS = B2N_DATASETS[1:]
DG_TARGETS = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
FEW_SHOTS = [1, 2, 4, 8, 16]
PROTOCOLS = ["base2new", "few_shot", "cross_dataset", "domain_gen"]

_KGCOOP_OPTS = ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.W", "8.0",
                "TRAINER.COOP.CLASS_TOKEN_POSITION", "end"]
_SEP_OPTS = ["TRAINER.COOP.N_CTX", "6", "TRAINER.COOP.N_CTX_V", "4", "TRAINER.COOP.L_IND", "0",
             "TRAINER.COOP.W", "8.0", "TRAINER.COOP.W_V", "6.0", "TRAINER.COOP.CSC", "False",
             "TRAINER.COOP.CLASS_TOKEN_POSITION", "end"]
_SEP_CFG = {"cfg": "vit_b32_ep50_ctxv1", "cfg_by_dataset": {"imagenet": "vit_b128_ep10_ctxv1",
                                                           "sun397": "vit_b128_ep10_ctxv1"}}
_MAPLE_REPO = "muzairkhattak/multimodal-prompt-learning"

# Per method: trainer, config folder (configs/trainers/<dir>), default seeds, and per protocol the config
# ("cfg", optionally "cfg_by_dataset" / "cfg_by_shots"), extra "opts" (KEY VALUE, for every run of the
# protocol), the default "shots" and where the settings come from ("source", printed in the scripts'
# headers). "transfer" serves cross_dataset and domain_gen: one ImageNet model evaluated on the targets.
METHODS = {
    "zsclip": {
        "trainer": "ZeroshotCLIP", "config_dir": "CoOp", "train": False, "seeds": [1],
        "base2new": {"cfg": "vit_b16", "source": "KaiyangZhou/CoOp scripts/coop/zeroshot.sh (eval-only, one "
                     "template per dataset) on the base and on the new classes, as the CoCoOp paper's CLIP row"},
        "few_shot": {"cfg": "vit_b16", "source": "KaiyangZhou/CoOp scripts/coop/zeroshot.sh on all classes: the "
                     "0-shot point of the few-shot curves (ViT-B/16 like the other methods; CFG=rn50 for the "
                     "CoOp paper's RN50 curves)"},
        "transfer": {"cfg": "vit_b16", "source": "KaiyangZhou/CoOp scripts/coop/zeroshot.sh on ImageNet and on "
                     "every target"},
    },
    "coop": {
        "trainer": "CoOp",
        "base2new": {"cfg": "vit_b16_ctxv1", "cfg_by_dataset": {"imagenet": "vit_b16_ep50_ctxv1"},
                     "source": "KaiyangZhou/CoOp scripts/cocoop/base2new_{train,test}.sh with TRAINER=CoOp and the "
                     "CFG lines they leave commented (vit_b16_ctxv1, ImageNet vit_b16_ep50_ctxv1); the load epoch "
                     "is the config's MAX_EPOCH (that test script hard-codes CoCoOp's 10)"},
        "few_shot": {"cfg_by_shots": {1: "rn50_ep50", 2: "rn50_ep100", 4: "rn50_ep100", 8: "rn50", 16: "rn50"},
                     "cfg_by_dataset": {"imagenet": "rn50_ep50"},
                     "opts": ["TRAINER.COOP.N_CTX", "16", "TRAINER.COOP.CSC", "False",
                              "TRAINER.COOP.CLASS_TOKEN_POSITION", "end"],
                     "source": "KaiyangZhou/CoOp scripts/coop/main.sh DATASET CFG end 16 SHOTS False (RN50, M=16, "
                     "unified context): rn50_ep50 for 1 shot, rn50_ep100 for 2 and 4, rn50 for 8 and 16, "
                     "rn50_ep50 for every shot count on ImageNet (COOP.md)"},
        "transfer": {"cfg": "vit_b16_ep50_ctxv1", "source": "KaiyangZhou/CoOp scripts/cocoop/xd_{train,test}.sh "
                     "with TRAINER=CoOp and CFG=vit_b16_ep50_ctxv1 (the CoCoOp/MaPLe papers' CoOp rows); the "
                     "same ImageNet model serves domain generalisation"},
    },
    "cocoop": {
        "trainer": "CoCoOp",
        "base2new": {"cfg": "vit_b16_c4_ep10_batch1_ctxv1", "source": "KaiyangZhou/CoOp "
                     "scripts/cocoop/base2new_{train,test}.sh (load epoch 10)"},
        "few_shot": {"cfg": "vit_b16_c4_ep10_batch1_ctxv1", "source": "no official few-shot script; the field's "
                     "protocol: the base-to-new config trained on all classes with K shots"},
        "transfer": {"cfg": "vit_b16_c4_ep10_batch1_ctxv1", "source": "KaiyangZhou/CoOp "
                     "scripts/cocoop/xd_{train,test}.sh (ImageNet, 16 shots, all classes; load epoch 10)"},
    },
    "maple": {
        "trainer": "MaPLe",
        "base2new": {"cfg": "vit_b16_c2_ep5_batch4_2ctx", "source": f"{_MAPLE_REPO} "
                     "scripts/maple/base2new_{train,test}_maple.sh (load epoch 5)"},
        "few_shot": {"cfg": "vit_b16_c2_ep5_batch4_2ctx", "source": "not scripted in the MaPLe repository; as "
                     "wds2014/ALIGN scripts/maple/fst.sh runs MaPLe: the base-to-new config on all classes, "
                     "K in 1 2 4 8 16"},
        "transfer": {"cfg": "vit_b16_c2_ep5_batch4_2ctx_cross_datasets", "source": f"{_MAPLE_REPO} "
                     "scripts/maple/xd_{train,test}_maple.sh (load epoch 2); the same model for domain "
                     "generalisation"},
    },
    "ivlp": {
        "trainer": "IVLP",
        "base2new": {"cfg": "vit_b16_c2_ep5_batch4_2+2ctx", "source": f"{_MAPLE_REPO} "
                     "scripts/independent-vlp/base2new_{train,test}_ivlp.sh (load epoch 5)"},
        "few_shot": {"cfg": "vit_b16_c2_ep5_batch4_2+2ctx", "source": "not scripted officially; the field's "
                     "protocol: the base-to-new config on all classes with K shots"},
        "transfer": {"cfg": "vit_b16_c2_ep5_batch4_2+2ctx", "source": f"{_MAPLE_REPO} "
                     "scripts/independent-vlp/xd_{train,test}_ivlp.sh, loading the last epoch (5; the official "
                     "test script asks for epoch 2, which is never saved)"},
    },
    "ivlp_lang": {  # deep language prompting: the IVLP trainer with its language-only config (no scripts/)
        "trainer": "IVLP",
        "base2new": {"cfg": "vit_b16_c2_ep5_batch4_4ctx_language_only", "source": f"{_MAPLE_REPO} "
                     "scripts/language-prompting/base2new_{train,test}_lp.sh (load epoch 5)"},
        "few_shot": {"cfg": "vit_b16_c2_ep5_batch4_4ctx_language_only", "source": "not scripted officially; the "
                     "base-to-new config on all classes with K shots"},
        "transfer": {"cfg": "vit_b16_c2_ep5_batch4_4ctx_language_only", "source": f"{_MAPLE_REPO} "
                     "scripts/language-prompting/xd_{train,test}_lp.sh, loading the last epoch"},
    },
    "vpt": {
        "trainer": "VPT",
        "base2new": {"cfg": "vit_b16_c2_ep5_batch4_4", "source": f"{_MAPLE_REPO} "
                     "scripts/vpt/base2new_{train,test}_vpt.sh (load epoch 5)"},
        "few_shot": {"cfg": "vit_b16_c2_ep5_batch4_4", "source": "not scripted officially; the field's protocol: "
                     "the base-to-new config on all classes with K shots"},
        "transfer": {"cfg": "vit_b16_c2_ep5_batch4_4", "source": f"{_MAPLE_REPO} scripts/vpt/xd_{{train,test}}_vpt.sh, "
                     "loading the last epoch (5; the official test script asks for epoch 2, which is never saved)"},
    },
    "kgcoop": {
        "trainer": "KgCoOp",
        "base2new": {"cfg": "vit_b16_ep100_ctxv1", "opts": _KGCOOP_OPTS, "source": "htyao89/KgCoOp "
                     "scripts/base2new_{train,test}.sh DATASET 8.0 (M=4, W=8.0; load epoch 100)"},
        "few_shot": {"cfg": "vit_b16_ep100_ctxv1", "opts": _KGCOOP_OPTS, "shots": [4], "source": "htyao89/KgCoOp "
                     "scripts/xd_train.sh (despite its name the few-shot run: 4 shots, all classes, W=8.0)"},
        "transfer": {"cfg": "vit_b16_ep100_ctxv1", "opts": _KGCOOP_OPTS, "source": "not scripted in the KgCoOp "
                     "repository; the field's protocol: the base-to-new settings trained on ImageNet (16 shots, "
                     "all classes), evaluated on every target"},
    },
    "sep": {
        "trainer": "SEP",
        "base2new": dict(_SEP_CFG, opts=_SEP_OPTS, source="htyao89/SEP scripts/base2new_train.sh (N_CTX 6, N_CTX_V 4, "
                         "L_IND 0, W 8.0, W_V 6.0; vit_b32_ep50_ctxv1, ImageNet and SUN397 vit_b128_ep10_ctxv1; "
                         "load epoch 50 / 10)"),
        "few_shot": dict(_SEP_CFG, opts=_SEP_OPTS, shots=[4], source="htyao89/SEP scripts/run_few_shot.sh is a stale "
                         "copy from another project; its intended run: the base-to-new configs and settings on "
                         "all classes, 4 shots (SHOTS=\"1 2 4 8 16\" for curves)"),
        "transfer": {"cfg": "vit_b32_ep3_ctxv1_cross_dataset", "opts": _SEP_OPTS, "eval_opts": ["DATASET.NUM_SHOTS",
                     "16"], "source": "htyao89/SEP scripts/run_cross_dataset.sh (load epoch 3); no domain "
                     "generalisation script: the same ImageNet model on the four ImageNet variants"},
    },
    "align": {
        "trainer": "ALIGN", "config_dir": "ALIGN",
        "base2new": {"cfg": "vit_b16_c2_ep5_batch4_2ctx", "cfg_by_dataset": {"sun397": "sun397"},
                     "source": "wds2014/ALIGN scripts/mmp/base_to_new_{train,test}.sh (sun397.yaml for SUN397 as "
                     "its commented line says; seeds 1 2 3 and the last epoch (20) are the field's convention, "
                     "the released test script loads epoch 15, which is never saved)"},
        "few_shot": {"cfg": "vit_b16_c2_ep5_batch4_2ctx", "source": "not scripted for ALIGN; as the repository's "
                     "MaPLe loop scripts/maple/fst.sh: all classes, K in 1 2 4 8 16 (the trainer sets the epochs "
                     "from the shots as the official train.py does)"},
        "transfer": {"cfg": "vit_b16_c2_ep5_batch4_2ctx", "source": "not scripted for ALIGN; the field's "
                     "protocol: ImageNet, 16 shots, all classes (20 epochs, set by the trainer as the official "
                     "train.py does), evaluated on every target"},
    },
}
ALIASES = {"mmp": "align", "clip": "zsclip", "lp": "ivlp_lang"}


def protocol_spec(method, protocol):
    m = METHODS[method]
    return m["transfer" if protocol in ("cross_dataset", "domain_gen") else protocol]


def default_shots(method, protocol):
    if protocol != "few_shot":
        return [16]
    return list(protocol_spec(method, protocol).get("shots", FEW_SHOTS))


def default_datasets(protocol):
    return {"base2new": B2N_DATASETS, "few_shot": B2N_DATASETS, "cross_dataset": XD_TARGETS,
            "domain_gen": DG_TARGETS}[protocol]


def known_datasets():
    folder = os.path.join(REPO, "configs", "datasets")
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))


# ----------------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------------

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
    max_epoch: int = None    # from the yaml and opts (shown by --dry-run; the real load epoch is the last saved)
    out_root: str = ""       # the sweep's OUTPUT

    @property
    def name(self):
        return os.path.relpath(self.out, self.out_root) if self.out_root else self.out

    def argv(self, load_epoch=None):
        a = ["--root", self.root, "--seed", str(self.seed), "--trainer", self.trainer,
             "--dataset-config-file", f"configs/datasets/{self.dataset}.yaml", "--config-file", self.config_file,
             "--output-dir", self.out]
        if self.kind == "eval":
            if self.model is not None:
                a += ["--model-dir", self.model.out, "--load-epoch", str(load_epoch if load_epoch is not None
                                                                          else "<last epoch>")]
            a.append("--eval-only")
        return a + list(self.opts)

    def signature(self):
        """The command with the output and data roots abstracted and the load epoch dropped: a rerun into
        the same folder must have the same signature."""
        sig, skip = [], False
        for a in self.argv():
            if skip:
                skip = False
                continue
            if a == "--load-epoch":
                skip = True
                continue
            if a == "--root":
                sig.append(a)
                sig.append("{DATA}")
                skip = True
                continue
            sig.append(a.replace(self.out_root, "{OUTPUT}") if self.out_root else a)
        return sig


@functools.lru_cache(maxsize=None)
def _yaml_epochs(config_file):
    import yaml

    try:
        with open(os.path.join(REPO, config_file)) as f:
            return ((yaml.safe_load(f) or {}).get("OPTIM") or {}).get("MAX_EPOCH")
    except (OSError, yaml.YAMLError):
        return None


def _yaml_max_epoch(config_file, opts):
    epochs = _yaml_epochs(config_file)
    for i in range(len(opts) - 1):
        if opts[i] == "OPTIM.MAX_EPOCH":
            epochs = int(opts[i + 1])
    return epochs


def plan(protocol, method, datasets, seeds, shots, out_root, root, extra_opts=(), cfg_override=None):
    """The runs of a sweep (training runs before the evaluations that load them)."""
    m = METHODS[method]
    spec = protocol_spec(method, protocol)
    trainer = m["trainer"]
    trainable = m.get("train", True)
    config_dir = m.get("config_dir", trainer)
    base_opts = list(spec.get("opts", []))
    extra_opts = list(extra_opts)
    runs = {}

    def cfg_for(dataset, k):
        if cfg_override:
            return cfg_override
        return spec.get("cfg_by_dataset", {}).get(dataset) or spec.get("cfg_by_shots", {}).get(k) or spec["cfg"]

    def make(kind, sub, dataset, k, seed, opts, model=None, shots_dir=None, folder=protocol):
        cfg = cfg_for(dataset, k)
        parts = [out_root, folder] + ([sub] if sub else []) + [
            dataset, f"shots_{k if shots_dir is None else shots_dir}", trainer, cfg, f"seed{seed}"]
        out = os.path.join(*parts)
        config_file = f"configs/trainers/{config_dir}/{cfg}.yaml"
        opts = opts + extra_opts
        run = Run(protocol, kind, out, root, trainer, dataset, seed, k, cfg, config_file, opts, model,
                  _yaml_max_epoch(config_file, opts) if kind == "train" else None, out_root)
        return runs.setdefault(out, run)

    for seed in seeds:
        if protocol == "base2new":
            for d in datasets:
                for k in shots:
                    opts = base_opts + ["DATASET.NUM_SHOTS", str(k)]
                    if trainable:
                        tr = make("train", "train_base", d, k, seed, opts + ["DATASET.SUBSAMPLE_CLASSES", "base"])
                        make("eval", "test_new", d, k, seed, opts + ["DATASET.SUBSAMPLE_CLASSES", "new"], tr)
                    else:
                        for sub in ("base", "new"):
                            make("eval", f"test_{sub}", d, k, seed, opts + ["DATASET.SUBSAMPLE_CLASSES", sub])
        elif protocol == "few_shot":
            for d in datasets:
                if not trainable:
                    make("eval", None, d, 0, seed, base_opts, shots_dir=0)
                    continue
                for k in shots:
                    make("train", None, d, k, seed, base_opts + ["DATASET.NUM_SHOTS", str(k)])
        else:  # cross_dataset / domain_gen: one ImageNet model (kept with the cross-dataset runs) per seed
            k = shots[0]
            eval_opts = base_opts + list(spec.get("eval_opts", []))
            if trainable:
                src = make("train", "train_source", XD_SOURCE, k, seed, base_opts + ["DATASET.NUM_SHOTS", str(k)],
                           folder="cross_dataset")
                for d in datasets:
                    make("eval", "test_target", d, k, seed, eval_opts, src)
            else:
                for d in [XD_SOURCE] + [d for d in datasets if d != XD_SOURCE]:
                    make("eval", "test_target", d, k, seed, eval_opts)
    return list(runs.values())


# ----------------------------------------------------------------------------------------------------
# Run folders: markers and records
# ----------------------------------------------------------------------------------------------------

DONE = "done.json"
RECORD = "sweep.json"
LOCK = ".sweep.lock"


def _atomic_write(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_done(run):
    return read_json(os.path.join(run.out, DONE)) is not None


def state(run):
    """'done', 'partial (epoch N)', 'started' or 'new'."""
    if is_done(run):
        return "done"
    if not os.path.isdir(run.out):
        return "new"
    epoch = last_checkpoint_epoch(run.out)
    return f"partial (epoch {epoch})" if epoch else "started"


def last_checkpoint_epoch(folder):
    """The epoch of the checkpoint a training folder's ``checkpoint`` pointer names (None if none)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None
    epochs = []
    for name in names:
        pointer = os.path.join(folder, name, "checkpoint")
        if os.path.isfile(pointer):
            with open(pointer) as f:
                fname = f.readline().strip()
            if fname.startswith("model.pth.tar-") and fname[len("model.pth.tar-"):].isdigit():
                epochs.append(int(fname[len("model.pth.tar-"):]))
    return min(epochs) if epochs else None


def _git_info():
    def git(*args):
        try:
            return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def _package_versions():
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "open_clip_torch", "numpy", "yacs", "Pillow", "scipy", "POT"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return versions


_ENV_INFO = {}


def env_info():
    if not _ENV_INFO:
        _ENV_INFO.update(git=_git_info(), packages=_package_versions())
    return _ENV_INFO


def check_signature(run):
    """A folder made by another command must not be resumed or counted (different settings)."""
    rec = read_json(os.path.join(run.out, RECORD))
    if rec is None or "signature" not in rec:
        return None
    if rec["signature"] != run.signature():
        old, new = rec["signature"], run.signature()
        diff = [f"{a!r} -> {b!r}" for a, b in zip(old, new) if a != b] or [
            f"{len(old)} -> {len(new)} arguments"]
        return f"{run.out} was made by another command ({'; '.join(diff[:3])})"
    return None


def write_record(run, cmd, load_epoch, launcher, gpu):
    path = os.path.join(run.out, RECORD)
    old = read_json(path) or {}
    rec = {
        "protocol": run.protocol, "kind": run.kind, "trainer": run.trainer, "dataset": run.dataset,
        "seed": run.seed, "shots": run.shots, "cfg": run.cfg,
        "command": cmd, "cwd": REPO, "signature": run.signature(), "load_epoch": load_epoch,
        "git": env_info()["git"], "packages": env_info()["packages"], "host": socket.gethostname(),
        "launcher": launcher, "gpu": gpu, "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "attempts": old.get("attempts", 0) + 1,
    }
    _atomic_write(path, json.dumps(rec, indent=2) + "\n")
    _atomic_write(os.path.join(run.out, "command.sh"),
                  "#!/usr/bin/env bash\n# written by tools/sweep.py; rerunning it resumes the run\n"
                  f"cd {shlex.quote(REPO)} && {shlex.join(cmd)}\n")


def _log_stats(folder):
    stats = {}
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        if parse_results.is_log_name(name):
            st = os.stat(os.path.join(folder, name))
            stats[name] = (st.st_mtime_ns, st.st_size)
    return stats


def finalize(run, before, started):
    """After exit status 0: find the log this attempt wrote, check its result block, write the marker.
    Returns (ok, message)."""
    after = _log_stats(run.out)
    changed = [n for n, s in after.items() if before.get(n) != s]
    if not changed:
        return False, "train.py exited 0 but wrote no log"
    log = max(changed, key=lambda n: (after[n][0], n))
    info = parse_results.read_log(os.path.join(run.out, log))
    if info["acc"] is None:
        return False, f"train.py exited 0 but {log} has no result block"
    final_epoch = None
    if run.kind == "train":
        final_epoch = last_checkpoint_epoch(run.out)
        if final_epoch is None:
            return False, "training finished without a checkpoint"
    if info["config_text"]:
        _atomic_write(os.path.join(run.out, "config.yaml"), info["config_text"])
    done = {"accuracy": info["acc"], "log": log, "final_epoch": final_epoch,
            "finished": datetime.datetime.now().isoformat(timespec="seconds"),
            "seconds": round(time.time() - started, 1)}
    _atomic_write(os.path.join(run.out, DONE), json.dumps(done, indent=2) + "\n")
    return True, f"{info['acc']:.2f}%"


# ----------------------------------------------------------------------------------------------------
# Launchers: a fresh `python train.py ...` per run, or a fork of a process that imported train.py once
# ----------------------------------------------------------------------------------------------------

class _Proc:
    def __init__(self, popen=None, pid=None):
        self.popen, self.pid = popen, pid if pid is not None else popen.pid

    def poll(self):
        if self.popen is not None:
            return self.popen.poll()
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        self.popen = _Finished(os.waitstatus_to_exitcode(status))
        return self.popen.returncode

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


class _Finished:
    def __init__(self, code):
        self.returncode = code

    def poll(self):
        return self.returncode


_TRAIN_IMPORTED = []
_LOCK_FDS = set()  # lock files this process holds (closed in forked children)


def launch(run, cmd_args, python, launcher, gpu, threads, verbose):
    log_path = os.path.join(run.out, "sweep_output.txt")
    env = {}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if threads and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(threads)
    if launcher == "subprocess":
        out = None if verbose else open(log_path, "ab")
        try:
            p = subprocess.Popen([*python, "train.py", *cmd_args], cwd=REPO, env={**os.environ, **env},
                                 stdout=out, stderr=subprocess.STDOUT if out else None)
        finally:
            if out:
                out.close()
        return _Proc(p)
    if not _TRAIN_IMPORTED:  # fork: import train.py (torch, ...) once in this process
        import train  # noqa: F401

        _TRAIN_IMPORTED.append(True)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return _Proc(pid=pid)
    code = 1
    try:  # child
        for fd in _LOCK_FDS:
            os.close(fd)
        os.chdir(REPO)
        os.environ.update(env)
        if not verbose:
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if threads:
            import torch

            torch.set_num_threads(threads)
        import train

        try:
            train.run(cmd_args)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


# ----------------------------------------------------------------------------------------------------
# Local executor: a queue over slots (one run per GPU, or N at once on CPU)
# ----------------------------------------------------------------------------------------------------

class Executor:
    def __init__(self, runs, slots=1, gpus=None, launcher="subprocess", python=None, verbose=False, quiet=False):
        self.runs = runs
        self.gpus = gpus or []
        self.slots = max(1, slots)
        self.launcher = launcher
        self.python = python or [sys.executable]
        self.verbose = verbose
        self.quiet = quiet
        self.status = {}  # out -> "done" | "ran" | "failed" | "blocked" | "busy"
        self.messages = {}
        cpus = os.cpu_count() or 1
        self.threads = max(1, cpus // self.slots) if (not self.gpus and self.slots > 1) else None

    def say(self, msg):
        if not self.quiet:
            print(msg, flush=True)

    def run(self):
        todo = []
        for r in self.runs:
            problem = check_signature(r) if is_done(r) else None
            if problem:
                self.status[r.out] = "failed"
                self.messages[r.out] = problem
                self.say(f"  FAILED {r.name}: {problem}; use another OUTPUT or delete the folder")
            elif is_done(r):
                self.status[r.out] = "done"
            else:
                todo.append(r)
        n_total = len(todo)
        self.say(f"{len(self.runs)} runs: {len(self.runs) - n_total} done, {n_total} to run"
                 + (f" on GPUs {','.join(map(str, self.gpus))}" if self.gpus else
                    f" ({self.slots} at a time)" if self.slots > 1 else ""))
        running = {}  # slot -> (run, proc, lock_fd, before, started)
        free = list(range(self.slots))
        k = 0
        try:
            while todo or running:
                for r in list(todo):
                    if not free:
                        break
                    dep = r.model
                    if dep is not None and self.status.get(dep.out) in ("failed", "blocked", "busy"):
                        todo.remove(r)
                        self.status[r.out] = "blocked"
                        self.messages[r.out] = f"its model {dep.out} is not done"
                        self.say(f"  blocked {r.name} (needs {dep.name})")
                        continue
                    if dep is not None and not is_done(dep):
                        continue
                    todo.remove(r)
                    k += 1
                    slot = free.pop(0)
                    started = self.start(r, slot, k, n_total)
                    if started is None:
                        free.append(slot)
                    else:
                        running[slot] = started
                if not running:
                    if todo:  # only runs whose dependency is outside this sweep and not done
                        for r in todo:
                            self.status[r.out] = "blocked"
                            self.messages[r.out] = f"its model {r.model.out} is not done"
                        todo = []
                    break
                time.sleep(0.05)
                for slot, (r, proc, fd, before, started) in list(running.items()):
                    code = proc.poll()
                    if code is None:
                        continue
                    del running[slot]
                    free.append(slot)
                    self.finish(r, code, before, started)
                    _LOCK_FDS.discard(fd)
                    os.close(fd)
        except KeyboardInterrupt:
            for r, proc, fd, _, _ in running.values():
                proc.kill()
            self.say("interrupted; rerun the same command to continue (finished runs are kept, killed "
                     "training runs resume from their last epoch)")
            raise
        return self.status

    def start(self, r, slot, k, n):
        problem = check_signature(r)
        if problem:
            self.status[r.out] = "failed"
            self.messages[r.out] = problem + "; use another OUTPUT or delete the folder"
            self.say(f"[{k}/{n}] FAILED {r.name}: {self.messages[r.out]}")
            return None
        os.makedirs(r.out, exist_ok=True)
        fd = os.open(os.path.join(r.out, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            self.status[r.out] = "busy"
            self.messages[r.out] = "another sweep is running it"
            self.say(f"[{k}/{n}] busy {r.name}: another sweep is running it")
            return None
        if is_done(r):  # finished by another sweep meanwhile
            os.close(fd)
            self.status[r.out] = "done"
            return None
        _LOCK_FDS.add(fd)
        load_epoch = None
        if r.kind == "eval" and r.model is not None:
            load_epoch = (read_json(os.path.join(r.model.out, DONE)) or {}).get("final_epoch") or r.model.max_epoch
        cmd_args = r.argv(load_epoch)
        gpu = self.gpus[slot % len(self.gpus)] if self.gpus else None
        write_record(r, [*(self.python if self.launcher == "subprocess" else [sys.executable]), "train.py",
                         *cmd_args], load_epoch, self.launcher, gpu)
        before = _log_stats(r.out)
        what = state(r)
        self.say(f"[{k}/{n}] {r.kind:5s} {r.name}" + (f" (resuming, {what})" if what.startswith("partial") else "")
                 + (f" [GPU {gpu}]" if gpu is not None else ""))
        proc = launch(r, cmd_args, self.python, self.launcher, gpu, self.threads, self.verbose)
        return r, proc, fd, before, time.time()

    def finish(self, r, code, before, started):
        if code == 0:
            ok, msg = finalize(r, before, started)
        else:
            ok, msg = False, f"exit status {code}"
        self.status[r.out] = "ran" if ok else "failed"
        self.messages[r.out] = msg
        secs = time.time() - started
        if ok:
            self.say(f"      done  {r.name}: {msg} ({secs:.0f} s)")
        else:
            self.say(f"      FAILED {r.name}: {msg}; see {os.path.join(r.out, 'sweep_output.txt')}")
            tail = _tail(os.path.join(r.out, "sweep_output.txt"), 8)
            if tail:
                self.say("        | " + "\n        | ".join(tail))


def _tail(path, n):
    try:
        with open(path, errors="replace") as f:
            return [line.rstrip("\n") for line in f.readlines()[-n:]]
    except OSError:
        return []


def execute_chain(runs, python=None, verbose=False):
    """Run a list of runs in order in this process's machine (the SLURM job body)."""
    status = Executor(runs, python=python, verbose=verbose).run()
    return {os.path.relpath(r.out, r.out_root): status.get(r.out) for r in runs}


def chains(runs):
    """Groups for SLURM: a training run with the evaluations that load it; other evaluations alone."""
    groups, by_train = [], {}
    for r in runs:
        if r.kind == "train":
            by_train[r.out] = [r]
            groups.append(by_train[r.out])
    for r in runs:
        if r.kind == "eval":
            if r.model is not None and r.model.out in by_train:
                by_train[r.model.out].append(r)
            else:
                groups.append([r])
    return groups


def submit_slurm(runs, args, python):
    try:
        import submitit
    except ImportError:
        raise SystemExit("error: --slurm needs submitit, which is not installed: pip install submitit "
                         "(or run locally with --gpus / --jobs)")
    todo = [c for c in chains(runs) if not all(is_done(r) for r in c)]
    if not todo:
        print("nothing to submit: every run is done")
        return []
    folder = os.path.join(args.output, "slurm", "%j")
    executor = submitit.AutoExecutor(folder=folder, cluster=args.slurm_cluster)
    params = {"timeout_min": args.slurm_time, "gpus_per_node": args.slurm_gpus, "cpus_per_task": args.slurm_cpus,
              "tasks_per_node": 1, "nodes": 1, "name": f"{args.protocol}-{args.method}"}
    slurm = {"slurm_partition": args.slurm_partition, "slurm_account": args.slurm_account,
             "slurm_qos": args.slurm_qos, "slurm_mem": args.slurm_mem, "slurm_constraint": args.slurm_constraint,
             "slurm_array_parallelism": args.slurm_parallelism}
    params.update({k: v for k, v in slurm.items() if v is not None})
    params["slurm_setup"] = [f"export PYTHONPATH={shlex.quote(REPO)}${{PYTHONPATH:+:$PYTHONPATH}}"]
    if args.slurm_param:
        extra = dict(p.split("=", 1) for p in args.slurm_param)
        params["slurm_additional_parameters"] = extra
    executor.update_parameters(**params)
    jobs = []
    with executor.batch():
        for chain in todo:
            jobs.append(executor.submit(execute_chain, chain, python))
    print(f"submitted {len(todo)} SLURM jobs ({sum(len(c) for c in todo)} runs) for {args.protocol} {args.method}; "
          f"logs under {os.path.dirname(folder)}")
    for job, chain in zip(jobs, todo):
        print(f"  job {job.job_id}: {os.path.relpath(chain[0].out, args.output)}"
              + (f" + {len(chain) - 1} evaluation(s)" if len(chain) > 1 else ""))
    return jobs


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------

def _split_ints(text):
    return [int(x) for x in text.replace(",", " ").split()]


def build_parser():
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="tools/sweep.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Options after `--` (and the OPTS environment variable) are KEY VALUE config overrides "
               "added to every run, e.g. `-- OPTIM.MAX_EPOCH 2`.")
    p.add_argument("protocol", choices=PROTOCOLS)
    p.add_argument("method", help=f"one of {', '.join(METHODS)}")
    p.add_argument("datasets", nargs="*", help="dataset yaml names (configs/datasets/), or `all`")
    p.add_argument("--root", default=env("DATA"), help="datasets' parent folder (env DATA)")
    p.add_argument("--output", default=env("OUTPUT") or os.path.join(REPO, "output"),
                   help="output root (env OUTPUT; default <repo>/output)")
    p.add_argument("--seeds", default=env("SEEDS"), help='e.g. "1 2 3" (env SEEDS; default 1 2 3, zsclip 1)')
    p.add_argument("--shots", default=env("SHOTS"),
                   help='e.g. "16" or "1 2 4 8 16" (env SHOTS; default 16, few_shot 1 2 4 8 16, kgcoop/sep 4)')
    p.add_argument("--opts", default=env("OPTS", ""), help="KEY VALUE overrides as one string (env OPTS)")
    p.add_argument("--cfg", default=env("CFG"), help="trainer yaml name for every run instead of the protocol's")
    p.add_argument("--gpus", default=env("GPUS"), help="e.g. 0,1,2,3: one run per GPU at a time (env GPUS)")
    p.add_argument("--jobs", type=int, default=int(env("JOBS", "0") or 0),
                   help="runs at once (env JOBS; default: one per GPU, or 1)")
    p.add_argument("--launch", choices=["subprocess", "fork"], default=env("LAUNCH", "subprocess"),
                   help="subprocess: a fresh `python train.py` per run (default); fork: import train.py once and "
                        "fork per run (saves the ~10 s start-up per run; CPU sweeps)")
    p.add_argument("--python", default=None, help="interpreter command for train.py (default: this one)")
    p.add_argument("--dry-run", action="store_true", help="list the runs, their state and commands; run nothing")
    p.add_argument("--no-table", action="store_true", help="do not print the table at the end")
    p.add_argument("-v", "--verbose", action="store_true", help="show train.py's output instead of saving it")
    s = p.add_argument_group("SLURM (needs `pip install submitit`): one job per training run and its evaluations")
    s.add_argument("--slurm", action="store_true", help="submit instead of running locally")
    s.add_argument("--slurm-partition")
    s.add_argument("--slurm-account")
    s.add_argument("--slurm-qos")
    s.add_argument("--slurm-constraint")
    s.add_argument("--slurm-mem", help="e.g. 32G")
    s.add_argument("--slurm-time", type=int, default=24 * 60, help="minutes per job (default 1440)")
    s.add_argument("--slurm-gpus", type=int, default=1, help="GPUs per job (default 1)")
    s.add_argument("--slurm-cpus", type=int, default=8, help="CPUs per job (default 8)")
    s.add_argument("--slurm-parallelism", type=int, help="most jobs of the array running at once")
    s.add_argument("--slurm-param", action="append", metavar="KEY=VALUE", help="any other sbatch option")
    s.add_argument("--slurm-cluster", default=None, help="submitit cluster (slurm, local, debug; default: auto)")
    s.add_argument("--slurm-wait", action="store_true", help="wait for the jobs, then print the table")
    return p


def parse_args(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = []
    if "--" in argv:
        i = argv.index("--")
        argv, passthrough = argv[:i], argv[i + 1:]
    args = build_parser().parse_intermixed_args(argv)
    args.method = ALIASES.get(args.method.lower(), args.method.lower())
    if args.method not in METHODS:
        raise SystemExit(f"error: unknown method {args.method!r}; one of {', '.join(METHODS)}")
    args.extra_opts = shlex.split(args.opts or "") + passthrough
    if len(args.extra_opts) % 2:
        raise SystemExit(f"error: config overrides come in KEY VALUE pairs, got {args.extra_opts}")
    known = known_datasets()
    datasets = []
    if not args.datasets:
        raise SystemExit(f"error: name the datasets (yaml names in configs/datasets/) or `all` "
                         f"(= {' '.join(default_datasets(args.protocol))})")
    for d in args.datasets:
        if d == "all":
            datasets += [x for x in default_datasets(args.protocol) if x not in datasets]
        elif d not in known:
            raise SystemExit(f"error: unknown dataset {d!r}; one of {', '.join(known)} or all")
        elif d not in datasets:
            datasets.append(d)
    args.datasets = datasets
    args.seeds = _split_ints(args.seeds) if args.seeds else METHODS[args.method].get("seeds", [1, 2, 3])
    args.shots = _split_ints(args.shots) if args.shots else default_shots(args.method, args.protocol)
    args.output = os.path.abspath(args.output)
    args.gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else []
    args.jobs = args.jobs or max(1, len(args.gpus))
    args.python = shlex.split(args.python) if args.python else [sys.executable]
    return args


def print_table(args, runs):
    results = parse_results.collect(args.output)
    labels = {parse_results.method_label(r.trainer, r.cfg) for r in runs}
    tables = parse_results.build_tables(results, protocols=[args.protocol], methods=labels, datasets=args.datasets)
    if tables:
        print()
        print(parse_results.render(tables, "terminal"))


def main(argv=None):
    args = parse_args(argv)
    if not args.root and not args.dry_run:
        raise SystemExit("error: no dataset root: set DATA=/path/to/datasets (or --root)")
    runs = plan(args.protocol, args.method, args.datasets, args.seeds, args.shots, args.output,
                os.path.abspath(args.root) if args.root else "$DATA", args.extra_opts, args.cfg)
    if args.dry_run:
        for r in runs:
            print(f"{state(r):18s} {r.name}")
            load = r.model.max_epoch if r.model is not None else None
            print(f"{'':18s} python train.py {shlex.join(r.argv(load))}")
        print(f"{len(runs)} runs, {sum(is_done(r) for r in runs)} done")
        return 0
    bad = {}
    if args.slurm:
        jobs = submit_slurm(runs, args, args.python)
        if not (args.slurm_wait and jobs):
            return 0
        for job in jobs:
            bad.update({k: v for k, v in job.result().items() if v in ("failed", "blocked", "busy")})
    else:
        executor = Executor(runs, slots=args.jobs, gpus=args.gpus, launcher=args.launch, python=args.python,
                            verbose=args.verbose)
        try:
            status = executor.run()
        except KeyboardInterrupt:
            return 130
        bad = {k: v for k, v in status.items() if v in ("failed", "blocked", "busy")}
        ran = sum(v == "ran" for v in status.values())
        print(f"{ran} run(s) finished now, {sum(v == 'done' for v in status.values())} were done, "
              f"{len(bad)} not done" + (": rerun the same command to retry them" if bad else ""))
    if not args.no_table:
        print_table(args, runs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
