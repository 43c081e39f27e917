"""Records and small helpers shared by the ONNX front end's stages.

:class:`IRGraph` is the front end's result: IR nodes (dicts), float32 constants, and the
weights of Conv/ConvTranspose/Gemm as :class:`Weight` records in IR layout (still
unquantized, with a per-output-channel multiplier that collects folded BatchNorm and Gemm
``alpha`` factors).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgenet.errors import ConversionError


@dataclass
class Weight:
    """A Conv/ConvTranspose/Gemm weight in IR layout (output channel = axis 0).

    ``values`` are the trained weights (float32, IR layout, no factor applied); the stored
    tensor stands for ``mult[o] · values[o, ...]`` (``mult`` collects folded BN / alpha).
    ``source`` names the ONNX initializer (or Constant node output) it came from and
    ``to_source`` maps an IR-layout array back to that tensor's layout.
    """

    name: str
    node: str
    op: str
    values: np.ndarray
    mult: np.ndarray
    source: Optional[str] = None
    source_kind: str = "initializer"     # or "constant" (a Constant node's output)
    to_source: Callable = field(default=lambda a: a)


@dataclass
class IRGraph:
    inputs: list
    outputs: list
    nodes: list
    consts: dict            # name -> float32 ndarray (biases, BN affine, other constants)
    weights: dict           # name -> Weight
    opset: int
    source_model: object = None

    def to_json(self) -> dict:
        return {"inputs": self.inputs, "outputs": self.outputs, "nodes": self.nodes}


def node_error(node, msg):
    return ConversionError(f"node '{node.name or node.op_type}' ({node.op_type}): {msg}")


def onnx_attrs(node) -> dict:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8")
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode("utf-8") for x in v]
        out[a.name] = v
    return out


def opset_of(model) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


def np_dtype(to):
    return helper.tensor_dtype_to_np_dtype(int(to))
