"""NumPy reference backend: the oracle every compiled kernel is tested against.

``OPS`` follows the backend contract of docs/IR.md; ``cases()`` (edgenet.reference.cases)
is a shared table of one-node test cases; ``run_node`` runs one node end to end.
"""
from .ops import EXCLUDED, OPS, OpImpl, run_node

__all__ = ["EXCLUDED", "OPS", "OpImpl", "run_node"]
