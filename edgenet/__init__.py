"""edgenet: ternary/quinary CNNs in one compact file, run by a Numba runtime.

    import edgenet
    model = edgenet.load("model.edgenet")          # device="cpu" | "cuda" | "reference"
    y = model(x)                                     # one input, one output
    outs = model.run({"input": x})                  # dict of outputs
"""
from .errors import (ConversionError, DeviceError, EdgenetError, FormatError, InputError,
                     ModelError, UnsupportedOpError, UsageError)
from .runtime import IOSpec, Model, load

__version__ = "0.1.0"

__all__ = ["ConversionError", "DeviceError", "EdgenetError", "FormatError", "IOSpec",
           "InputError", "Model", "ModelError", "UnsupportedOpError", "UsageError", "load",
           "__version__"]
