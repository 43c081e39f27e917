"""ONNX -> edgenet IR (docs/IR.md). ``load_onnx`` is the entry point; see frontend.py."""
from .frontend import SUPPORTED_OPS, check_supported, load_onnx
from .graph import IRGraph, Weight
from .translate import TRANSLATORS

__all__ = ["IRGraph", "SUPPORTED_OPS", "TRANSLATORS", "Weight", "check_supported", "load_onnx"]
