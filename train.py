"""vlprompt's single entry point; the command line of the CoOp-family train.py, with the same meaning."""
import argparse
import errno
import os
import signal
import sys
import threading

import torch

from engine import build_trainer
from engine.bundle import is_bundle_file, read_bundle
from engine.config import (ConfigConflict, all_keys, get_cfg_default, merge_from_file, merge_from_list,
                           merge_from_mapping, peek_yaml_value)
from engine.run_record import EARLY_KEYS, FolderCheck, check_resume_source, data_fingerprint, run_signature
from engine.trainer import TRAINER_REGISTRY
from engine.utils import collect_env_info, set_random_seed, setup_logger
from engine.utils.logger import restore_stdout, write_to_log
from engine.utils.tools import UserError, deferred_warnings
from meta.run_folder import RunLock
from meta.runs import remove_stale_temporaries

import datasets  # noqa: F401  (registers the datasets)
from models.clip import resolve_input_normalisation
import trainers  # noqa: F401  (registers the trainers)


def print_args(args, cfg):
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(args.__dict__):
        print(f"{key}: {args.__dict__[key]}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def reset_cfg(cfg, args):
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None:  # Dassl ignores --seed 0 (falsy); we honour it
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def extend_cfg(cfg):
    """Every registered trainer adds its node (as CoOp's extend_cfg adds all of them). A key declared by
    two trainers with different defaults stops here, naming both."""
    owners = {}
    for name in TRAINER_REGISTRY.registered_names():
        extend = getattr(TRAINER_REGISTRY.get(name), "extend_cfg", None)
        if extend is None:
            continue
        try:
            extend(cfg)
        except ConfigConflict as e:
            raise UserError(f"trainers {owners.get(e.key, '?')} and {name} both declare {e.key}, with defaults "
                            f"{e.existing!r} and {e.declared!r}: give the key one default (or another name)") from e
        for key in all_keys(cfg):
            owners.setdefault(key, name)


def _trainer_name(args):
    """The trainer a command line asks for (flag, option or trainer yaml), before the config is merged."""
    opts = list(args.opts or [])
    for i in range(0, len(opts) - 1, 2):
        if opts[i] == "TRAINER.NAME":
            return opts[i + 1]
    if args.trainer:
        return args.trainer
    return peek_yaml_value(args.config_file, "TRAINER.NAME") if args.config_file else ""


def bundle_config(args):
    """The config a prompt bundle carries, for ``--eval-only --model-dir BUNDLE`` (None otherwise)."""
    if args.eval_only and is_bundle_file(args.model_dir):
        return read_bundle(args.model_dir)["config"]
    return None


def setup_cfg(args, saved=None):
    """The config in one direction: built (defaults, every trainer's node, the ``saved`` config of a trained run
    or bundle, yaml files, command line), resolved by the trainer (``resolve_cfg``), then frozen; nothing
    writes to it afterwards."""
    cfg = get_cfg_default()
    extend_cfg(cfg)
    saved = saved if saved is not None else bundle_config(args)
    name = _trainer_name(args) or (saved or {}).get("TRAINER", {}).get("NAME", "")
    trainer_cls = TRAINER_REGISTRY.get(name) if name else None  # unknown names fail here, before any work
    readers = getattr(trainer_cls, "legacy_values", {})
    if saved:
        merge_from_mapping(cfg, saved, "the trained run's saved config", readers)
        for key in getattr(trainer_cls, "training_only_keys", ()):  # files only its training read
            cfg.merge_from_list([key, ""])
    if args.dataset_config_file:
        merge_from_file(cfg, args.dataset_config_file, readers)
    if args.config_file:
        merge_from_file(cfg, args.config_file, readers)
    reset_cfg(cfg, args)
    merge_from_list(cfg, args.opts, readers)
    if not cfg.TRAINER.NAME:
        raise UserError("no trainer given: pass --trainer NAME (one of "
                        f"{', '.join(TRAINER_REGISTRY.registered_names())})")
    resolve_input_normalisation(cfg)  # an open_clip backbone's preprocessing (and its early refusal)
    TRAINER_REGISTRY.get(cfg.TRAINER.NAME).resolve_cfg(cfg)
    cfg.freeze()
    return cfg


def resolve_config(argv):
    """The frozen config ``python train.py ARGV`` would run with (used by the sweep's planning and --dry-run)."""
    return setup_cfg(build_parser().parse_args(argv))


def main(args, cfg):
    """One run in ``cfg.OUTPUT_DIR``, which this process holds locked (``run``)."""
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    folder = FolderCheck(cfg.OUTPUT_DIR, overwrite=args.overwrite, resume_anyway=args.resume_anyway)
    sig = run_signature(cfg, args.eval_only, args.model_dir, args.load_epoch)
    folder.check(sig, EARLY_KEYS)  # before anything is written into the folder
    if cfg.RESUME and os.path.abspath(cfg.RESUME) != os.path.abspath(cfg.OUTPUT_DIR):
        check_resume_source(cfg.RESUME, sig, args.resume_anyway)
    for path in remove_stale_temporaries(cfg.OUTPUT_DIR):
        print(f"Removed {path} (left by a killed write)")
    log_path = setup_logger(cfg.OUTPUT_DIR)
    for w in RUN_WARNINGS:
        print(f"Warning: {w}")
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print_args(args, cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")
    trainer = build_trainer(cfg)
    RUN_STATE["trainer"] = trainer
    if args.eval_only and not args.model_dir and has_learnable_state(trainer) and not args.untrained:
        raise UserError(f"--eval-only without --model-dir would evaluate {cfg.TRAINER.NAME}'s untrained prompts: "
                        "pass --model-dir DIR (and --load-epoch N), or --untrained to evaluate them on purpose")
    sig["data"] = data_fingerprint(trainer.dm.dataset, cfg.DATASET.ROOT)
    try:
        folder.check(sig, ["data"])
    except UserError:
        discard_log(log_path)  # the folder is another run's: leave no log of ours in it
        raise
    trainer.accepted_signatures = folder.record_run(sig, trainer.get_model_names())
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        trainer.record_cost()
    elif not args.no_train:
        trainer.train()
    if RUN_WARNINGS:
        print("** Run summary: warnings **")
        for w in RUN_WARNINGS:
            print(f"Warning: {w}")
    return trainer


def has_learnable_state(trainer):
    return any(p.requires_grad for name in trainer.get_model_names() for p in trainer._models[name].parameters())


def discard_log(path):
    restore_stdout()
    if path and os.path.isfile(path):
        os.remove(path)


def build_parser():
    parser = argparse.ArgumentParser(description="vlprompt: prompt tuning of CLIP models")
    parser.add_argument("--root", type=str, default="", help="path to the datasets' parent folder")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="", help="checkpoint directory to resume from")
    parser.add_argument("--seed", type=int, default=None, help="seed (>= 0 fixes all RNGs; -1: unseeded)")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="trainer yaml")
    parser.add_argument("--dataset-config-file", type=str, default="", help="dataset yaml")
    parser.add_argument("--trainer", type=str, default="", help="trainer name (registry key)")
    parser.add_argument("--backbone", type=str, default="", help="CLIP backbone name")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only, "
                        "or from a prompt bundle file (tools/export.py; its config is the base of this run's)")
    parser.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("--untrained", action="store_true", help="with --eval-only and no --model-dir: evaluate "
                        "the trainer's initial (untrained) prompts on purpose")
    parser.add_argument("--overwrite", action="store_true", help="the output folder holds a run with other "
                        "settings: delete its checkpoints and logits and start this run afresh there")
    parser.add_argument("--resume-anyway", action="store_true", help="the output folder holds a run with other "
                        "settings: continue from its checkpoints with this command's settings")
    parser.add_argument("--device", type=str, default="", help="accepted for PLOT++'s official command lines and "
                        "ignored: the device is CUDA when available and USE_CUDA is True, else the CPU")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="modify config options using the command-line (KEY VALUE pairs)")
    return parser


RUN_WARNINGS = []  # the warnings of the current run (trainer rules in resolve_cfg), shown at start and end
RUN_STATE = {}     # the current run's trainer, once built (to name its last checkpoint in an error)
RESOURCE_ERRNOS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only",
                   errno.EACCES: "permission denied", errno.EPERM: "permission denied"}


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. a sweep or a batch system stopping the run), handled as SIGINT."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _kept(trainer):
    """What a rerun resumes from, for the end of an error line."""
    last = trainer.last_checkpoint() if trainer is not None else None
    return (f"the last intact checkpoint is {last}; rerun the same command to resume from it" if last else
            "no checkpoint was written yet; a rerun starts over")


def _is_out_of_memory(e):
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and any(
        s in str(e) for s in ("out of memory", "can't allocate memory", "Cannot allocate memory")))


def failure_message(e, trainer):
    """One line for an interruption or a resource error (None: a bug, shown with its traceback)."""
    if isinstance(e, KeyboardInterrupt):
        what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted (SIGINT)"
        where = f" in epoch {trainer.epoch + 1}" if trainer is not None and hasattr(trainer, "time_start") else ""
        return f"{what}{where}; {_kept(trainer)}"
    if isinstance(e, OSError) and e.errno in RESOURCE_ERRNOS:
        path = e.filename or "the output folder"
        return (f"cannot write {path}: {e.strerror} ({RESOURCE_ERRNOS[e.errno]}); free space or fix the folder's "
                f"permissions, or choose another --output-dir; {_kept(trainer)}")
    if _is_out_of_memory(e):
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        return (f"out of memory ({first[:160]}); lower DATALOADER.TRAIN_X.BATCH_SIZE or DATALOADER.TEST.BATCH_SIZE, "
                f"or use PREC amp/fp16; {_kept(trainer)}")
    return None


def _fail(line, code):
    """The error on stderr, after everything printed so far, and as the last line of the run's log."""
    sys.stdout.flush()
    write_to_log(f"error: {line}")
    restore_stdout()
    print(f"error: {line}", file=sys.stderr, flush=True)
    sys.exit(code)


def run(argv=None):
    """Parse ``argv`` and run; a user error, an interruption or a resource error (disk full, read-only
    folder, out of memory) ends with one line on stderr (also the last line of log.txt) and exit status 2
    (130 for SIGINT/SIGTERM). The output folder is locked for the whole run and released on any exit."""
    args = build_parser().parse_args(argv)
    RUN_WARNINGS.clear()
    RUN_STATE.clear()
    lock = None
    previous_sigterm = None
    if threading.current_thread() is threading.main_thread():
        previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with deferred_warnings() as warnings:
            cfg = setup_cfg(args)
        RUN_WARNINGS.extend(warnings)
        lock = RunLock(cfg.OUTPUT_DIR).acquire()
        return main(args, cfg)
    except UserError as e:
        _fail(str(e), 2)
    except (KeyboardInterrupt, OSError, MemoryError, RuntimeError) as e:
        line = failure_message(e, RUN_STATE.get("trainer"))
        if line is None:
            raise
        _fail(line, 130 if isinstance(e, KeyboardInterrupt) else 2)
    finally:
        if lock is not None:
            lock.release()
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


if __name__ == "__main__":
    run()
