"""NumPy reference backend: the oracle every compiled kernel is tested against.

``OPS`` follows the backend contract of docs/IR.md; ``cases()`` (edgenet.reference.cases)
is a shared table of one-node test cases; ``run_node`` runs one node end to end.
"""
from .math_ops import MATH_OPS
from .ops import EXCLUDED, OPS, OpImpl, run_node
from .rnn import RNN_OPS

OPS.update(MATH_OPS)    # Unary, BinaryMath, Reduce (edgenet/reference/math_ops.py)
OPS.update(RNN_OPS)     # LSTM (edgenet/reference/rnn.py)

__all__ = ["EXCLUDED", "OPS", "OpImpl", "run_node"]
