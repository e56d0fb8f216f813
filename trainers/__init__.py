"""One module per method; importing this package registers every trainer."""
from . import coop, zsclip  # noqa: F401
