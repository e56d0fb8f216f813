"""The config train.py runs a command line with, for the tools that need one of its values before (or
without) running it: the sweep's load epochs, the benchmark's trainers. Importing train imports torch, so
call this only where such a value is needed."""
import contextlib

from tools import REPO


class ConfigError(ValueError):
    """train.py would refuse the command line (the message is its one-line error)."""


def resolve_config(argv):
    """``train.resolve_config`` run from the repository, where train.py reads the command line's relative
    paths: the frozen config of ``python train.py ARGV``, the trainer's resolve step included."""
    import train
    from engine.utils.tools import UserError

    with contextlib.chdir(REPO):
        try:
            return train.resolve_config(list(argv))
        except UserError as e:
            raise ConfigError(str(e)) from e
