"""The .edgenet format: codecs (checked bit by bit against an independent decoder written
here from the spec), the writer/reader round trip, and hostile files (corrupt, truncated,
foreign, crafted headers) -> FormatError naming the file, and one line from the CLI."""
import json
import math
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
from click.testing import CliRunner

import edgenet
import edgenet.cli
from tests.helpers import build_model, join_file, model_input, split_file
from edgenet.errors import FormatError, ModelError
from edgenet.format import ALIGNMENT, CODECS, Encoding, pack, read_model, write_model
from edgenet.format.codecs import FLOAT_DTYPES, stored_nbytes
from edgenet.format.constants import MAGIC, MAX_RANK, MAX_TENSORS, PREAMBLE, align

RNG = np.random.default_rng(1234)
ODD_K = [1, 2, 3, 4, 5, 7, 8, 9, 11, 13, 15, 16, 17, 23, 25, 31, 33]
ALL_ENCODINGS = list(CODECS) + [Encoding.F32, Encoding.F16]


# ============================================================ independent bit-level spec
# Written from the codecs.py docstring, one weight at a time, without using codecs.py.
def _t2_decode(row: bytes, k):
    out = []
    for j in range(k):
        code = (row[j // 4] >> (2 * (j % 4))) & 3
        assert code != 3, "invalid t2 code"
        out.append({0: 0, 1: 1, 2: -1}[code])
    return out


def _t2_encode(levels):
    k = len(levels)
    row = bytearray((k + 3) // 4)
    for j, lv in enumerate(levels):
        row[j // 4] |= {0: 0, 1: 1, -1: 2}[int(lv)] << (2 * (j % 4))
    return bytes(row)


def _q3_code(row: bytes, j):
    g, p = divmod(j, 8)
    word = row[3 * g] | (row[3 * g + 1] << 8) | (row[3 * g + 2] << 16)
    return (word >> (3 * p)) & 7


def _q3_decode(row: bytes, k):
    out = []
    for j in range(k):
        code = _q3_code(row, j)
        v = code - 8 if code >= 4 else code  # 3-bit two's complement
        assert -2 <= v <= 2, "invalid q3 code"
        out.append(v)
    return out


def _q3_encode(levels):
    k = len(levels)
    row = bytearray((k + 7) // 8 * 3)
    for j, lv in enumerate(levels):
        g, p = divmod(j, 8)
        bit = 24 * g + 3 * p
        code = int(lv) & 7
        for b in range(3):
            if code >> b & 1:
                row[(bit + b) // 8] |= 1 << ((bit + b) % 8)
    return bytes(row)


def _t5_decode(row: bytes, k):
    out = []
    for j in range(k):
        byte = row[j // 5]
        assert byte <= 242, "invalid t5 byte"
        out.append((byte // 3 ** (j % 5)) % 3 - 1)
    return out


def _t5_encode(levels):
    k = len(levels)
    nb = (k + 4) // 5
    digits = [1] * (nb * 5)  # padding trits encode level 0
    for j, lv in enumerate(levels):
        digits[j] = int(lv) + 1
    return bytes(sum(digits[5 * b + i] * 3 ** i for i in range(5)) for b in range(nb))


def _i8_decode(row: bytes, k):
    vals = [b - 256 if b > 127 else b for b in row[:k]]
    assert -128 not in vals
    return vals


def _i8_encode(levels):
    return bytes(int(v) & 0xFF for v in levels)


SPEC = {Encoding.T2: (_t2_decode, _t2_encode), Encoding.Q3: (_q3_decode, _q3_encode),
        Encoding.T5: (_t5_decode, _t5_encode), Encoding.I8: (_i8_decode, _i8_encode)}


def _spec(enc):
    if enc not in SPEC:
        pytest.fail(f"codec {enc.value} is registered but tests/test_format.py has no "
                    f"independent bit-level decoder for it: add one to SPEC")
    return SPEC[enc]


def _levels(enc, o, k):
    c = CODECS[enc]
    return RNG.integers(c.lo, c.hi + 1, size=(o, k)).astype(np.int8)


def _invalid_row(enc, k):
    """A packed row of k weights with one invalid code (per the spec); None if the
    encoding has no invalid code for this k."""
    c = CODECS[enc]
    row = bytearray(np.asarray(c.pack_rows(np.zeros((1, k), np.int8))).view(np.uint8)[0])
    if enc == Encoding.T2:
        row[0] |= 3
    elif enc == Encoding.Q3:
        row[0] = (row[0] & ~7) | 4  # code 100 = -4: invalid
    elif enc == Encoding.T5:
        row[0] = 243
    elif enc == Encoding.I8:
        row[0] = 0x80  # -128
    else:
        return None
    return bytes(row)


def _padding_row(enc, k):
    """A packed row of k zero weights with a nonzero padding bit/trit; None if none."""
    c = CODECS[enc]
    row = bytearray(np.asarray(c.pack_rows(np.zeros((1, k), np.int8))).view(np.uint8)[0])
    nb = len(row)
    if enc == Encoding.T2 and k % 4:
        row[-1] |= 1 << (2 * (k % 4))
    elif enc == Encoding.Q3 and k % 8:
        g, p = divmod(k, 8)
        bit = 24 * g + 3 * p
        row[bit // 8] |= 1 << (bit % 8)
    elif enc == Encoding.T5 and k % 5:
        row[-1] += 3 ** (k % 5)  # padding trit 1 -> 2
    else:
        return None
    assert len(row) == nb
    return bytes(row)


# ============================================================ codecs
@pytest.mark.parametrize("enc", list(CODECS), ids=lambda e: e.value)
@pytest.mark.parametrize("k", ODD_K)
def test_codec_bit_exact_against_independent_spec(enc, k):
    decode, encode = _spec(enc)
    lv = _levels(enc, 3, k)
    rows = np.asarray(CODECS[enc].pack_rows(lv))
    assert rows.shape == (3, CODECS[enc].row_bytes(k))
    for o in range(3):
        raw = rows[o].view(np.uint8).tobytes()
        assert raw == encode(lv[o]), f"{enc.value} k={k}: packed bytes differ from the spec"
        assert decode(raw, k) == lv[o].tolist()
    np.testing.assert_array_equal(CODECS[enc].unpack_rows(rows, k), lv)
    assert CODECS[enc].valid_rows(rows, k)


@pytest.mark.parametrize("enc", list(CODECS), ids=lambda e: e.value)
@pytest.mark.parametrize("k", ODD_K)
def test_codec_padding_is_zero_and_checked(enc, k):
    c = CODECS[enc]
    full = np.full((2, k), c.hi, np.int8)  # all-max levels: any padding leak would show
    rows = np.asarray(c.pack_rows(full)).view(np.uint8)
    decode, _ = _spec(enc)
    nb = rows.shape[1]
    capacity = {Encoding.T2: nb * 4, Encoding.Q3: nb // 3 * 8, Encoding.T5: nb * 5,
                Encoding.I8: nb}[enc]
    # every weight slot past k decodes as level 0 (zero bits; t5: trit 1)
    assert all(v == 0 for v in decode(rows[0].tobytes(), capacity)[k:]), \
        f"{enc.value}: nonzero padding"
    bad = _padding_row(enc, k)
    if bad is not None:
        arr = np.frombuffer(bad, np.uint8).view(c.storage_dtype)[None]
        assert not c.valid_rows(arr, k)


@pytest.mark.parametrize("enc", list(CODECS), ids=lambda e: e.value)
@pytest.mark.parametrize("k", [1, 3, 5, 9, 17])
def test_codec_rejects_invalid_codes(enc, k):
    c = CODECS[enc]
    bad = _invalid_row(enc, k)
    assert bad is not None
    arr = np.frombuffer(bad, np.uint8).view(c.storage_dtype)[None]
    assert not c.valid_rows(arr, k)
    with pytest.raises(ValueError):
        c.pack_rows(np.full((1, k), c.hi + 1, np.int16))


@pytest.mark.parametrize("enc", ALL_ENCODINGS, ids=lambda e: e.value)
@pytest.mark.parametrize("shape", [(1,), (3, 1), (5, 3, 3, 3), (7, 9), (2, 1, 1, 5)])
def test_pack_round_trip(enc, shape):
    if enc in FLOAT_DTYPES:
        v = RNG.standard_normal(shape).astype(np.float32)
        p = pack(enc, v)
        np.testing.assert_array_equal(p.dequantize(), v.astype(FLOAT_DTYPES[enc]).astype(np.float32))
    else:
        c = CODECS[enc]
        lv = RNG.integers(c.lo, c.hi + 1, size=shape)
        scale = RNG.uniform(0.1, 2, shape[0]).astype(np.float32)
        p = pack(enc, lv, scale)
        np.testing.assert_array_equal(p.levels().reshape(shape), lv)
        want = lv.astype(np.float32) * scale.reshape((-1,) + (1,) * (len(shape) - 1))
        np.testing.assert_array_equal(p.dequantize(), want)
    assert p.nbytes == stored_nbytes(enc, shape)


# ============================================================ writer / reader
def _all_encodings_model(path):
    tensors = {}
    for enc in ALL_ENCODINGS:
        for shape in [(3, 5), (4, 1, 3, 3), (1,)]:
            name = f"{enc.value}_{'x'.join(map(str, shape))}"
            if enc in FLOAT_DTYPES:
                tensors[name] = pack(enc, RNG.standard_normal(shape))
            else:
                c = CODECS[enc]
                tensors[name] = pack(enc, RNG.integers(c.lo, c.hi + 1, size=shape),
                                     RNG.uniform(0.1, 2, shape[0]))
    graph = {"inputs": [{"name": "x", "shape": [None, 3], "dtype": "float32"}],
             "outputs": [{"name": "x", "shape": [None, 3], "dtype": "float32"}], "nodes": []}
    write_model(path, graph=graph, tensors=tensors, metadata={"producer": "test"})
    return tensors


def test_writer_reader_round_trip_zero_copy_aligned(tmp_path):
    path = tmp_path / "all.edgenet"
    tensors = _all_encodings_model(path)
    m = read_model(path)
    got = m.weights()
    assert set(got) == set(tensors)
    for name, t in tensors.items():
        g = got[name]
        assert g.encoding == t.encoding and g.shape == t.shape
        np.testing.assert_array_equal(g.dequantize(), t.dequantize())
        assert np.shares_memory(g.data, m._map), f"{name}: not a zero-copy view"
        assert g.data.ctypes.data % ALIGNMENT == 0, f"{name}: misaligned"
        if g.scale is not None:
            assert np.shares_memory(g.scale, m._map)
            np.testing.assert_array_equal(g.scale, t.scale)
    for info in m.tensors.values():
        assert info.offset % ALIGNMENT == 0 and (m.data_start + info.offset) % ALIGNMENT == 0
        raw = m._raw(info)
        assert zlib.crc32(raw) & 0xFFFFFFFF == info.crc32
    assert m.data_start % ALIGNMENT == 0 and m.size % ALIGNMENT == 0
    assert not any(n.startswith(".edgenet-") for n in os.listdir(tmp_path))
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask(), "mkstemp's 0600 leaked"


def _umask():
    u = os.umask(0)
    os.umask(u)
    return u


def test_checksum_detects_each_tensor(tmp_path):
    path = tmp_path / "m.edgenet"
    _all_encodings_model(path)
    blob = path.read_bytes()
    m = read_model(path)
    for info in m.tensors.values():
        if not info.nbytes:
            continue
        b = bytearray(blob)
        b[m.data_start + info.offset + info.nbytes // 2] ^= 0x10
        bad = tmp_path / "bad.edgenet"
        bad.write_bytes(bytes(b))
        with pytest.raises(FormatError, match=f"'{info.name}'.*checksum"):
            read_model(bad)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    p = str(tmp_path_factory.mktemp("fmt") / "small.edgenet")
    return build_model(p)


def test_small_model_runs(small):
    y = edgenet.load(small, device="reference")(model_input())
    assert y.shape == (2, 5) and np.isfinite(y).all()


LONG = os.environ.get("EDGENET_LONG") == "1"


def _positions(n, head=PREAMBLE.size + 64, stride=5):
    """Every position in the preamble and the start of the header, then every stride-th
    (stride coprime with the 64-byte alignment, so every region and every offset class
    within a tensor is hit). EDGENET_LONG=1: every position."""
    if LONG:
        return list(range(n))
    return list(range(min(head, n))) + list(range(head, n, stride)) + [n - 1]


def test_flipped_bits_anywhere_are_detected(small, tmp_path):
    """Flipped bits across the whole file -- preamble, header, header padding, tensor data,
    padding between tensors, final padding -> FormatError naming the file. CI: one bit per
    position of _positions (bit index rotating); EDGENET_LONG=1: all 8 bits of every byte."""
    blob = open(small, "rb").read()
    bad = tmp_path / "flip.edgenet"
    bad.write_bytes(blob)
    fd = os.open(bad, os.O_RDWR)
    try:
        for i in _positions(len(blob)):
            for bit in (range(8) if LONG else [i % 8]):
                os.pwrite(fd, bytes([blob[i] ^ (1 << bit)]), i)
                with pytest.raises(FormatError) as ei:
                    read_model(bad)
                assert str(bad) in str(ei.value), (i, bit, ei.value)
            os.pwrite(fd, blob[i:i + 1], i)
    finally:
        os.close(fd)
    read_model(bad)  # restored: valid again


def test_every_truncation_class_is_detected(small, tmp_path):
    """Prefixes ending in the preamble, the header, the header padding, inside and between
    tensors (CI: _positions; EDGENET_LONG=1: every length)."""
    blob = open(small, "rb").read()
    bad = tmp_path / "trunc.edgenet"
    for n in _positions(len(blob), stride=7):
        bad.write_bytes(blob[:n])
        with pytest.raises(FormatError) as ei:
            read_model(bad)
        assert str(bad) in str(ei.value)


@pytest.mark.parametrize("extra", [b"\0", b"\0" * 64, b"garbage"])
def test_trailing_bytes_are_detected(small, tmp_path, extra):
    bad = tmp_path / "long.edgenet"
    bad.write_bytes(open(small, "rb").read() + extra)
    with pytest.raises(FormatError, match="trailing|size"):
        read_model(bad)


FOREIGN = {
    "empty": b"",
    "random": bytes(np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8)),
    "png": b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + b"\0" * 64,
    "zip": b"PK\x03\x04" + b"\0" * 100,
    "elf": b"\x7fELF\x02\x01\x01" + b"\0" * 100,
    "json": b'{"format": "edgenet", "version": 1}',
    "magic_only": MAGIC,
    "npy": b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
}


@pytest.fixture(params=sorted(FOREIGN) + ["directory", "missing"])
def foreign(request, tmp_path):
    p = tmp_path / f"{request.param}.edgenet"
    if request.param == "directory":
        p.mkdir()
    elif request.param != "missing":
        p.write_bytes(FOREIGN[request.param])
    return str(p)


def test_foreign_files_raise_format_error(foreign):
    with pytest.raises(FormatError) as ei:
        read_model(foreign)
    assert foreign in str(ei.value)
    with pytest.raises(FormatError):
        edgenet.load(foreign, device="reference")


def _one_line_error(result_stderr, path):
    lines = result_stderr.strip().splitlines()
    assert len(lines) == 1, result_stderr
    assert lines[0].startswith("edgenet: error: ") and path in lines[0]
    assert "Traceback" not in result_stderr


def test_cli_info_on_foreign_files_one_line(foreign):
    r = CliRunner().invoke(edgenet.cli.main, ["info", foreign])
    assert r.exit_code == 2, r.output
    _one_line_error(r.stderr, foreign)


@pytest.mark.parametrize("where", ["header", "data", "truncated"])
def test_cli_info_on_corrupt_file_subprocess(small, tmp_path, where):
    blob = bytearray(open(small, "rb").read())
    if where == "header":
        blob[PREAMBLE.size + 5] ^= 1
    elif where == "data":
        blob[-100] ^= 0x80
    else:
        blob = blob[:len(blob) // 2]
    bad = tmp_path / f"{where}.edgenet"
    bad.write_bytes(bytes(blob))
    r = subprocess.run([sys.executable, "-m", "edgenet.cli", "info", str(bad)],
                       capture_output=True, text=True, timeout=120,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 2, r.stderr
    _one_line_error(r.stderr, str(bad))
    assert r.stdout == ""


# ============================================================ crafted (re-checksummed) headers
def _craft(small, tmp_path, edit, data=None, name="crafted.edgenet"):
    fields, header, d = split_file(open(small, "rb").read())
    out = edit(header)
    header = header if out is None else out
    p = tmp_path / name
    p.write_bytes(join_file(fields, header, d if data is None else data))
    return str(p)


def _raw_header_file(tmp_path, raw: bytes, tail=b""):
    pre = PREAMBLE.pack(MAGIC, 1, 0, len(raw), zlib.crc32(raw) & 0xFFFFFFFF, 0)
    blob = pre + raw
    blob += b"\0" * (align(len(blob)) - len(blob)) + tail
    p = tmp_path / "raw.edgenet"
    p.write_bytes(blob)
    return str(p)


def _tensor(h, name):
    return next(t for t in h["tensors"] if t["name"] == name)


def _node(h, name):
    return next(n for n in h["graph"]["nodes"] if n["name"] == name)


HOSTILE_HEADERS = {
    # shapes whose element count overflows int64 (np.prod wraps) but whose wrapped byte
    # count is small: must be rejected from exact arithmetic before any reshape
    "int64_overflow_shape": lambda h: _tensor(h, "conv.b").update(shape=[2**30, 2**30, 4]),
    "huge_elements": lambda h: _tensor(h, "conv.b").update(shape=[2**31 - 1, 2**31 - 1]),
    "rank_9": lambda h: _tensor(h, "conv.b").update(shape=[1] * (MAX_RANK + 1)),
    "negative_dim": lambda h: _tensor(h, "conv.b").update(shape=[-6]),
    "float_dim": lambda h: _tensor(h, "conv.b").update(shape=[6.0]),
    "bool_dim": lambda h: _tensor(h, "conv.b").update(shape=[True]),
    "offset_past_end": lambda h: _tensor(h, "fc.b").update(offset=2**40),
    "offset_2_64": lambda h: _tensor(h, "fc.b").update(offset=2**64),
    "offset_misaligned": lambda h: _tensor(h, "fc.b").update(offset=_tensor(h, "fc.b")["offset"] + 4),
    "nbytes_wrong": lambda h: _tensor(h, "fc.b").update(nbytes=8),
    "overlap": lambda h: _tensor(h, "fc.b").update(offset=_tensor(h, "conv.b")["offset"],
                                                   crc32=_tensor(h, "conv.b")["crc32"]),
    "enormous_int": lambda h: _tensor(h, "fc.b").update(offset=10**200),
    "crc_negative": lambda h: _tensor(h, "fc.b").update(crc32=-1),
    "unknown_encoding": lambda h: _tensor(h, "fc.b").update(encoding="f64"),
    "zero_rows_quantized": lambda h: _tensor(h, "fc.w").update(shape=[0, 6], nbytes=0),
    "scale_missing": lambda h: _tensor(h, "fc.w").pop("scale"),
    "scale_wrong_shape": lambda h: _tensor(h, "fc.w").update(scale="conv.b"),
    "duplicate_tensor": lambda h: h["tensors"].append(dict(h["tensors"][0])),
    "name_newline": lambda h: _tensor(h, "fc.b").update(name="fc\nb"),
    "name_surrogate": lambda h: _tensor(h, "fc.b").update(name="\ud800"),
    "too_many_tensors": lambda h: h.update(tensors=[{}] * (MAX_TENSORS + 1)),
    "tensors_not_list": lambda h: h.update(tensors={"a": 1}),
    "graph_not_dict": lambda h: h.update(graph=[]),
    "header_version": lambda h: h.update(version=2),
    "not_edgenet": lambda h: h.update(format="onnx"),
    "nodes_not_list": lambda h: h["graph"].update(nodes={}),
    "node_not_dict": lambda h: h["graph"]["nodes"].append(3),
    "attrs_not_dict": lambda h: _node(h, "conv").update(attrs=[1, 2]),
    "inputs_not_str": lambda h: _node(h, "conv").update(inputs=["x", 5, "conv.b"]),
    "no_outputs": lambda h: _node(h, "conv").update(outputs=[]),
    "op_not_str": lambda h: _node(h, "conv").update(op=None),
    "io_shape_huge": lambda h: h["graph"]["inputs"][0].update(shape=[None] + [2**31 - 1] * 3),
    "io_dtype": lambda h: h["graph"]["inputs"][0].update(dtype="float64"),
    "io_zero_dim": lambda h: h["graph"]["inputs"][0].update(shape=[None, 0, 7, 7]),
    "labels_not_list": lambda h: h["metadata"].update(labels={"a": 1}),
    "labels_ints": lambda h: h["metadata"].update(labels=[1, 2]),
    "preprocessing_mean_str": lambda h: h["metadata"].update(preprocessing={"mean": "abc"}),
    "preprocessing_std_zero": lambda h: h["metadata"].update(preprocessing={"std": [0, 1, 1]}),
    "preprocessing_size_huge": lambda h: h["metadata"].update(preprocessing={"size": [10**9, 1]}),
    "deep_metadata": lambda h: h["metadata"].update(deep=json.loads("[" * 200 + "]" * 200)),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_HEADERS))
def test_hostile_header_fields_rejected(small, tmp_path, case):
    path = _craft(small, tmp_path, HOSTILE_HEADERS[case])
    with pytest.raises(FormatError) as ei:
        read_model(path)
    assert path in str(ei.value)
    assert "\n" not in str(ei.value)


def test_int64_wrapping_shape_rejected(small, tmp_path):
    """np.prod([2**32, 2**32], int64) == 0: a reader using it would accept nbytes 0."""
    assert int(np.prod([2**32, 2**32], dtype=np.int64)) == 0
    path = _craft(small, tmp_path, lambda h: _tensor(h, "conv.b").update(
        shape=[65536] * 4, nbytes=0))  # 2**64 elements; each dim < 2**31
    with pytest.raises(FormatError, match="elements|bad shape|nbytes"):
        read_model(path)


@pytest.mark.parametrize("raw", [
    b"[" * 100000 + b"]" * 100000,                       # RecursionError in the parser
    b'{"format": "edgenet", "version": 1, "a": ' + b"9" * 5000 + b"}",  # int > 4300 digits
    b'{"format": "edgenet", "version": 1e999}',             # inf without parse_constant
    b'{"format": "edgenet", "version": NaN}',
    b"\xff\xfe{}",                                          # not UTF-8
    b"",                                                    # empty header
    b"null",
], ids=["deep", "bigint", "inf", "nan", "utf8", "empty", "null"])
def test_hostile_json_rejected(tmp_path, raw):
    path = _raw_header_file(tmp_path, raw)
    with pytest.raises(FormatError) as ei:
        read_model(path)
    assert path in str(ei.value)


@pytest.mark.parametrize("hlen", [2**63, 2**64 - 1, 64 << 20 + 1, 10**6])
def test_header_length_bounded_before_allocation(small, tmp_path, hlen):
    blob = bytearray(open(small, "rb").read())
    m, v, f, _, c, r = PREAMBLE.unpack(bytes(blob[:PREAMBLE.size]))
    blob[:PREAMBLE.size] = PREAMBLE.pack(m, v, f, hlen, c, r)
    p = tmp_path / "hlen.edgenet"
    p.write_bytes(bytes(blob))
    with pytest.raises(FormatError, match="header length"):
        read_model(p)


@pytest.mark.parametrize("field,value", [("version", 2), ("flags", 1), ("reserved", 7)])
def test_preamble_fields_checked(small, tmp_path, field, value):
    blob = bytearray(open(small, "rb").read())
    vals = dict(zip(["magic", "version", "flags", "hlen", "crc", "reserved"],
                    PREAMBLE.unpack(bytes(blob[:PREAMBLE.size]))))
    vals[field] = value
    blob[:PREAMBLE.size] = PREAMBLE.pack(*vals.values())
    p = tmp_path / "pre.edgenet"
    p.write_bytes(bytes(blob))
    with pytest.raises(FormatError, match=field if field != "reserved" else "reserved"):
        read_model(p)


# node attributes of the wrong types/values never reach a kernel: ModelError at load
BAD_ATTRS = {
    "conv_strides_str": ("conv", {"strides": "ab"}),
    "conv_strides_zero": ("conv", {"strides": [0, 1]}),
    "conv_pads_negative": ("conv", {"pads": [-1, 1, 1, 1]}),
    "conv_pads_short": ("conv", {"pads": [1, 1]}),
    "conv_group_zero": ("conv", {"group": 0}),
    "conv_group_2": ("conv", {"group": 2}),
    "conv_group_float": ("conv", {"group": 1.0}),
    "conv_dilations_huge": ("conv", {"dilations": [100, 1]}),
    "conv_activation_bogus": ("conv", {"activation": {"kind": "Bogus"}}),
    "conv_activation_str": ("conv", {"activation": "Relu"}),
    "act_null": ("relu", {"activation": None}),
    "act_alpha_str": ("relu", {"activation": {"kind": "LeakyRelu", "alpha": "x"}}),
    "flatten_axis_neg": ("flat", {"axis": -1}),
    "flatten_axis_big": ("flat", {"axis": 9}),
    "flatten_axis_none": ("flat", {"axis": None}),
    "gemm_activation_list": ("fc", {"activation": [1]}),
}


@pytest.mark.parametrize("case", sorted(BAD_ATTRS))
def test_bad_node_attributes_rejected_at_load(small, tmp_path, case):
    node, upd = BAD_ATTRS[case]
    path = _craft(small, tmp_path, lambda h: _node(h, node)["attrs"].update(upd))
    with pytest.raises(ModelError) as ei:
        edgenet.load(path, device="reference")
    assert node in str(ei.value)


@pytest.mark.parametrize("edit", [
    lambda h: _node(h, "fc").update(inputs=["f", "conv.w", "fc.b"]),   # weight shape mismatch
    lambda h: _node(h, "conv").update(inputs=["x", "fc.w", "conv.b"]),
    lambda h: _node(h, "conv").update(op="Gemm"),
    lambda h: _node(h, "gap").update(op="Loop"),
    lambda h: _node(h, "gap").update(inputs=["nope"]),
    lambda h: _node(h, "fc").update(outputs=["c"]),
    lambda h: h["graph"]["nodes"].reverse(),
    lambda h: h["graph"]["outputs"][0].update(name="zzz"),
], ids=["gemm_w", "conv_w", "op_swap", "unknown_op", "undefined_input", "redefined",
        "order", "missing_output"])
def test_bad_graphs_rejected_at_load(small, tmp_path, edit):
    path = _craft(small, tmp_path, edit)
    with pytest.raises(ModelError):
        edgenet.load(path, device="reference")


@pytest.mark.parametrize("enc", ["t2", "q3", "i8", "t5"])
def test_kernel_rows_are_the_stored_rows_or_lossless_t2(enc):
    """Packed.kernel_rows: the one re-packing rule of the CPU and CUDA backends."""
    from edgenet.format.codecs import Packed
    from edgenet.format.constants import PACKED_CODE, Encoding
    lim = {"t2": 1, "q3": 2, "i8": 127, "t5": 1}[enc]
    lv = np.random.default_rng(3).integers(-lim, lim + 1, size=(5, 3, 3, 3))
    p = pack(enc, lv, np.linspace(0.5, 1.5, 5).astype(np.float32))
    code, rows = p.kernel_rows()
    kept = Encoding("t2" if enc == "t5" else enc)
    assert code == PACKED_CODE[kept] and rows.dtype == np.uint8 and rows.shape[0] == 5
    data = rows.view(np.int8) if kept == Encoding.I8 else rows
    back = Packed(kept, p.shape, data, p.scale)
    np.testing.assert_array_equal(back.levels(), lv.reshape(5, -1))
    if enc != "t5":
        assert np.shares_memory(rows, p.data)   # no copy of what is already packed
