"""The .edgenet file format (v1): constants, codecs, the writer and the reader."""
from .codecs import BITS, CODECS, Packed, pack, stored_nbytes
from .constants import ALIGNMENT, MAGIC, VERSION, Encoding
from .reader import ModelFile, TensorInfo, read_model
from .writer import SCALE_SUFFIX, write_model

__all__ = ["ALIGNMENT", "BITS", "CODECS", "Encoding", "MAGIC", "ModelFile", "Packed",
           "SCALE_SUFFIX", "TensorInfo", "VERSION", "pack", "read_model", "stored_nbytes",
           "write_model"]
