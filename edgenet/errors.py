"""One exception hierarchy for everything a user can get wrong.

The CLI turns any ``EdgenetError`` into one line ``edgenet: error: ...`` and exit status 2.
Anything else escaping the runtime is a bug in edgenet.
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


class DeviceError(EdgenetError):
    """The requested device (e.g. cuda) is not available."""
