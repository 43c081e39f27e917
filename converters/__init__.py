"""edgenet converters: turn trained models (ONNX) into .edgenet files.

Public entry points::

    from converters import convert, Report
    from converters.quantize import ternarize, quinarize, int8_quantize, detect_levels

``onnx`` is imported only when a conversion runs; ``converters.quantize`` needs NumPy only.
"""
__version__ = "0.1.0"

from .convert import Report, convert  # noqa: E402  (onnx is imported lazily inside)

__all__ = ["Report", "convert", "__version__"]
