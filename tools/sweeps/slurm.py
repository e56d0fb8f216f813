"""SLURM submission through submitit: one job per training run (or chain of stages) and the evaluations that
load it."""
import os
import shlex

from tools import REPO

from .executor import execute_chain
from .records import is_done


def chains(runs):
    """Groups for SLURM, each run after what it depends on: a training run with the evaluations that load it and
    the later stages that continue it (a stage-chain's shared first stage carries every seed's later stages);
    other evaluations alone."""
    groups, group_of = [], {}
    planned = {r.out for r in runs}

    def root(r):
        while r.depends_on is not None and r.depends_on.out in planned:
            r = r.depends_on
        return r

    for r in runs:
        head = root(r)
        if head.kind == "train" or head is not r:
            if head.out not in group_of:
                group_of[head.out] = []
                groups.append(group_of[head.out])
            group_of[head.out].append(r)
        else:
            groups.append([r])
    for group in groups:  # dependencies first (the plan lists training runs before what depends on them)
        group.sort(key=_depth)
    return groups


def _depth(run):
    depth = 0
    while run.depends_on is not None:
        run, depth = run.depends_on, depth + 1
    return depth


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
        params["slurm_additional_parameters"] = dict(p.split("=", 1) for p in args.slurm_param)
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
