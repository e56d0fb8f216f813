"""One module per method; importing this package registers every trainer."""
from . import align, cocoop, coop, ivlp, kgcoop, maple, plot, prograd, promptsrc, sep, tcp, vpt, zsclip  # noqa: F401
