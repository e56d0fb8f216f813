"""Experiment sweeps: every run of one protocol for one method, crash-safe and resumable, one after the
other on this machine, spread over local GPUs, or submitted to SLURM.

    python tools/sweep.py PROTOCOL SWEEP DATASET [DATASET ...] [options] [-- KEY VALUE ...]
    python tools/sweep.py base2new sep imagenet          # what scripts/sep/base2new.sh imagenet runs
    python tools/sweep.py few_shot coop all --gpus 0,1,2,3
    python tools/sweep.py cross_dataset maple all --slurm --slurm-partition gpu
    python tools/sweep.py --write-scripts                # regenerate scripts/<sweep>/<protocol>.sh

PROTOCOL is base2new, few_shot, cross_dataset or domain_gen; SWEEP a key under ``sweeps`` in a method's
configs/trainers/<Trainer>/method.yaml (its settings per protocol: configs, options, shots, seeds, and where
they come from), or the lowercase trainer name; DATASET the name of a yaml in configs/datasets/ or ``all``.
The environment variables DATA, OUTPUT, SEEDS, SHOTS, OPTS, CFG, GPUS and JOBS set the defaults of --root,
--output, --seeds, --shots, --opts, --cfg, --gpus and --jobs (this is how the scripts/<sweep>/*.sh wrappers
are configured).

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

A sweep with ``stages`` in its method data trains each (dataset, shots, seed) as a chain of runs, one per stage
(each with its own config, so its own <cfg> folder), each started once the previous one is done; a stage may
pass the previous stage's folder to train.py (PLOT++: stage 2's PRETRAIN_DIR) and run for some seeds only,
the other seeds continuing from it. Evaluations load the last stage's model.

Evaluations load the last epoch of their training run: its OPTIM.MAX_EPOCH as train.py resolves the
config (the trainer's own rules included; --dry-run shows it). A run counts as done only when this driver
has written ``done.json`` into its folder, which it does after train.py exited 0 and the log it wrote
holds the result block. Rerunning a sweep runs only what is not done; a training run that was killed
resumes from its last epoch checkpoint (train.py does that in the same folder). Each run folder also gets
``sweep.json`` (command, git commit, package versions, host, attempts), ``command.sh``,
``sweep_output.txt`` (the process's stdout and stderr) and ``config.yaml`` (the resolved config: train.py's
own for training runs, else as train.py printed it into the log); ``done.json`` holds the run's cost figures.
"""
import argparse
import os
import shlex
import sys

from meta.methods import all_sweeps, label_for, sweep_aliases
from meta.protocols import PROTOCOLS, default_datasets
from tools.results.cells import collect
from tools.results.render import render
from tools.results.tables import build_tables
from tools import REPO
from tools.train_config import ConfigError

from .executor import NOT_DONE, Executor
from .plan import plan
from .records import is_done, state
from .scripts import write_scripts
from .slurm import submit_slurm


def known_datasets():
    folder = os.path.join(REPO, "configs", "datasets")
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))


def _split_ints(text):
    return [int(x) for x in text.replace(",", " ").split()]


def build_parser():
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="tools/sweep.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Options after `--` (and the OPTS environment variable) are KEY VALUE config overrides "
               "added to every run, e.g. `-- OPTIM.MAX_EPOCH 2`.")
    p.add_argument("protocol", nargs="?", choices=PROTOCOLS)
    p.add_argument("method", nargs="?", help=f"a sweep: one of {', '.join(all_sweeps())}")
    p.add_argument("datasets", nargs="*", help="dataset yaml names (configs/datasets/), or `all`")
    p.add_argument("--write-scripts", action="store_true",
                   help="write scripts/<sweep>/<protocol>.sh for every sweep with scripts (from the method data)")
    p.add_argument("--root", default=env("DATA"), help="datasets' parent folder (env DATA)")
    p.add_argument("--output", default=env("OUTPUT") or os.path.join(REPO, "output"),
                   help="output root (env OUTPUT; default <repo>/output)")
    p.add_argument("--seeds", default=env("SEEDS"), help='e.g. "1 2 3" (env SEEDS; default: the sweep\'s)')
    p.add_argument("--shots", default=env("SHOTS"),
                   help='e.g. "16" or "1 2 4 8 16" (env SHOTS; default 16, few_shot: the sweep\'s or 1 2 4 8 16)')
    p.add_argument("--opts", default=env("OPTS", ""), help="KEY VALUE overrides as one string (env OPTS)")
    p.add_argument("--cfg", default=env("CFG"), help="trainer yaml name for every run instead of the protocol's")
    p.add_argument("--gpus", default=env("GPUS"), help="e.g. 0,1,2,3: one run per GPU at a time (env GPUS)")
    p.add_argument("--jobs", type=int, default=int(env("JOBS", "0") or 0),
                   help="runs at once (env JOBS; default: one per GPU, or 1)")
    p.add_argument("--launch", choices=["subprocess", "fork"], default=env("LAUNCH", "subprocess"),
                   help="subprocess: a fresh `python train.py` per run (default); fork: import train.py once and "
                        "fork per run (saves the ~10 s start-up per run; CPU sweeps)")
    p.add_argument("--python", default=None, help="interpreter command for train.py (default: this one)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs, their state, epochs and commands; run nothing")
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
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    if args.write_scripts:
        return args
    if not args.protocol or not args.method:
        parser.error("name a PROTOCOL and a SWEEP (or pass --write-scripts)")
    sweeps = all_sweeps()
    args.method = sweep_aliases().get(args.method.lower(), args.method.lower())
    if args.method not in sweeps:
        raise SystemExit(f"error: unknown method {args.method!r}; one of {', '.join(sweeps)}")
    sweep = sweeps[args.method]
    args.extra_opts = shlex.split(args.opts or "") + passthrough
    if len(args.extra_opts) % 2:
        raise SystemExit(f"error: config overrides come in KEY VALUE pairs, got {args.extra_opts}")
    if not args.datasets:
        raise SystemExit(f"error: name the datasets (yaml names in configs/datasets/) or `all` "
                         f"(= {' '.join(default_datasets(args.protocol))})")
    known = known_datasets()
    datasets = []
    for d in args.datasets:
        if d == "all":
            datasets += [x for x in default_datasets(args.protocol) if x not in datasets]
        elif d not in known:
            raise SystemExit(f"error: unknown dataset {d!r}; one of {', '.join(known)} or all")
        elif d not in datasets:
            datasets.append(d)
    args.datasets = datasets
    args.seeds = _split_ints(args.seeds) if args.seeds else list(sweep.seeds)
    args.shots = _split_ints(args.shots) if args.shots else sweep.default_shots(args.protocol)
    args.output = os.path.abspath(args.output)
    args.gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else []
    args.jobs = args.jobs or max(1, len(args.gpus))
    args.python = shlex.split(args.python) if args.python else [sys.executable]
    return args


def print_dry_run(runs):
    """Each run's state, resolved epoch (a training run's MAX_EPOCH, the epoch an evaluation loads), command."""
    for r in runs:
        try:
            epoch = (f"MAX_EPOCH {r.max_epoch}" if r.kind == "train" else
                     f"loads epoch {r.load_epoch}" if r.model is not None else "")
            if r.stage:
                epoch = f"stage {r.stage}, {epoch}"
            command = shlex.join(r.argv())
        except ConfigError as e:
            raise SystemExit(f"error: {r.name}: train.py refuses its command line: {e}")
        print(f"{state(r):18s} {r.name}" + (f"  ({epoch})" if epoch else ""))
        print(f"{'':18s} python train.py {command}")
    print(f"{len(runs)} runs, {sum(is_done(r) for r in runs)} done")


def print_table(args, runs):
    labels = {label_for(r.trainer, r.cfg) for r in runs}
    tables = build_tables(collect(args.output), protocols=[args.protocol], methods=labels, datasets=args.datasets)
    if tables:
        print()
        print(render(tables, "terminal"))


def main(argv=None):
    args = parse_args(argv)
    if args.write_scripts:
        return write_scripts()
    if not args.root and not args.dry_run:
        raise SystemExit("error: no dataset root: set DATA=/path/to/datasets (or --root)")
    runs = plan(args.protocol, args.method, args.datasets, args.seeds, args.shots, args.output,
                os.path.abspath(args.root) if args.root else "$DATA", args.extra_opts, args.cfg)
    if args.dry_run:
        print_dry_run(runs)
        return 0
    if args.slurm:
        jobs = submit_slurm(runs, args, args.python)
        if not (args.slurm_wait and jobs):
            return 0
        bad = {k: v for job in jobs for k, v in job.result().items() if v in NOT_DONE}
    else:
        executor = Executor(runs, slots=args.jobs, gpus=args.gpus, launcher=args.launch, python=args.python,
                            verbose=args.verbose)
        try:
            status = executor.run()
        except KeyboardInterrupt:
            return 130
        bad = {k: v for k, v in status.items() if v in NOT_DONE}
        ran = sum(v == "ran" for v in status.values())
        print(f"{ran} run(s) finished now, {sum(v == 'done' for v in status.values())} were done, "
              f"{len(bad)} not done" + (": rerun the same command to retry them" if bad else ""))
    if not args.no_table:
        print_table(args, runs)
    return 1 if bad else 0
