"""One exception hierarchy for everything a user can get wrong.

The CLI turns any ``EdgenetError`` into one line ``edgenet: error: ...`` and exit status 2.
Anything else escaping the runtime is a bug in edgenet. One class per kind of mistake:

    EdgenetError
      FormatError        the file           ModelError   its graph (nodes, attributes, shapes)
      InputError         the input arrays
      UsageError         the arguments      DeviceError  the device (unknown or absent)
      UnsupportedOpError, ConversionError   the source model (converter)
"""


class EdgenetError(Exception):
    """Base class of every error edgenet reports to a user."""


class FormatError(EdgenetError):
    """A .edgenet file is corrupt, truncated, foreign or inconsistent."""


class ModelError(FormatError):
    """A well-formed file whose graph is invalid (bad node attributes or shapes)."""


class InputError(EdgenetError):
    """An input array (or input file) does not match what the model expects."""


class UnsupportedOpError(EdgenetError):
    """A source model uses operators edgenet cannot convert; lists every one of them."""


class ConversionError(EdgenetError):
    """A source model could not be converted for a reason other than unsupported ops."""


class UsageError(EdgenetError, ValueError):
    """The caller asked for something edgenet does not offer: an unknown device, weights
    policy or activation precision, a bad thread count, levels out of range for an encoding.
    (Also a ValueError, which is what such a mistake is in plain Python.)"""


class DeviceError(UsageError):
    """The requested device is unknown, or not available here (e.g. cuda without a GPU)."""
