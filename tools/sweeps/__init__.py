"""The sweep driver behind ``tools/sweep.py`` (its docstring, in ``cli``, describes the protocols and layout):
``plan`` (the runs of a protocol, from the method data), ``records`` (what a run folder holds: signature,
sweep.json, done.json), ``launch`` (starting train.py), ``executor`` (the local queue over GPUs or CPU
slots), ``slurm`` (submission), ``scripts`` (the generated scripts/<key>/<protocol>.sh), ``cli``."""
