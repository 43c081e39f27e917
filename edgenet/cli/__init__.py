"""The ``edgenet`` command line: commands only, one module per command, on top of the
library (edgenet.io, edgenet.summary, edgenet.benchmark, edgenet.batch, converters).
Nothing below this package imports it. The group and its error policy: ``app``."""
from . import batch, bench, convert, finetune, info, run, warmup  # noqa: F401  (register the commands)
from .app import main

__all__ = ["main"]
