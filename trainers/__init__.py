"""One module per method; importing this package registers every trainer."""
from . import cocoop, coop, ivlp, kgcoop, maple, vpt, zsclip  # noqa: F401
