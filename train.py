"""vlprompt's single entry point; the command line of the CoOp-family train.py, with the same meaning."""
import argparse
import sys

import torch

from engine import build_trainer
from engine.bundle import is_bundle_file, read_bundle
from engine.config import (ConfigConflict, all_keys, get_cfg_default, merge_from_file, merge_from_list,
                           merge_from_mapping, peek_yaml_value)
from engine.trainer import TRAINER_REGISTRY
from engine.utils import collect_env_info, set_random_seed, setup_logger
from engine.utils.tools import UserError

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


def main(args):
    cfg = setup_cfg(args)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print_args(args, cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")
    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        trainer.record_cost()
        return trainer
    if not args.no_train:
        trainer.train()
    return trainer


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
    parser.add_argument("--device", type=str, default="", help="accepted for PLOT++'s official command lines and "
                        "ignored: the device is CUDA when available and USE_CUDA is True, else the CPU")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="modify config options using the command-line (KEY VALUE pairs)")
    return parser


def run(argv=None):
    """Parse ``argv`` and run; a user error ends with one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return main(args)
    except UserError as e:
        log = getattr(sys.stdout, "file", None)  # the run's log.txt, when the logger is set up
        if log is not None:
            log.write(f"error: {e}\n")  # a failed run's log ends with its error
            log.flush()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
