"""NumPy reference backend: the oracle every compiled kernel is tested against.

``OPS`` follows the backend contract of docs/IR.md; ``cases()`` (edgenet.reference.cases)
is a shared table of one-node test cases; ``run_node`` runs one node end to end.
"""
from .ops import OPS, OpImpl, run_node

__all__ = ["OPS", "OpImpl", "run_node"]
