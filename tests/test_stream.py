"""The AXI4-Stream packing shared by the host, the testbench and the board driver."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flow.runtime.fixed import FixedType
from flow.runtime.stream import StreamFormat


def test_layout_is_little_endian_with_lane_0_in_the_lsbs():
    fmt = StreamFormat(3, 2, FixedType(6, 2), FixedType(12, 4, signed=False), word_bits=32)
    assert (fmt.in_lane_bits, fmt.in_lanes, fmt.in_words) == (8, 4, 1)
    assert fmt.pack_inputs(np.array([[1, -2, 31]])).tolist() == [1, 0xFE, 31, 0]
    assert (fmt.out_lane_bits, fmt.out_lanes, fmt.out_words) == (16, 2, 1)
    assert fmt.pack_outputs(np.array([[0xABC, 5]])).tolist() == [0xBC, 0x0A, 5, 0]


@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 32), st.integers(1, 32), st.booleans(),
       st.sampled_from([32, 64, 128]), st.integers(0, 10_000))
def test_pack_unpack_round_trip(n_in, n_out, win, wout, signed, word_bits, seed):
    fmt = StreamFormat(n_in, n_out, FixedType(win, 1, signed), FixedType(wout, 1, signed), word_bits)
    rng = np.random.default_rng(seed)
    x = rng.integers(fmt.in_type.min_code, fmt.in_type.max_code + 1, size=(5, n_in))
    y = rng.integers(fmt.out_type.min_code, fmt.out_type.max_code + 1, size=(5, n_out))
    xb, yb = fmt.pack_inputs(x), fmt.pack_outputs(y)
    assert xb.size == 5 * fmt.in_words * word_bits // 8
    assert np.array_equal(fmt.unpack_inputs(xb, 5), x)
    assert np.array_equal(fmt.unpack_outputs(yb, 5), y)
    assert StreamFormat.from_dict(fmt.to_dict()) == fmt


def test_bad_inputs():
    fmt = StreamFormat(4, 2, FixedType(6, 2), FixedType(8, 4))
    with pytest.raises(ValueError, match='outside the range'):
        fmt.pack_inputs(np.array([[40, 0, 0, 0]]))
    with pytest.raises(ValueError, match=r'expected codes of shape \(n, 4\)'):
        fmt.pack_inputs(np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match='bytes received'):
        fmt.unpack_outputs(np.zeros(8, dtype=np.uint8), 2)
    with pytest.raises(ValueError, match='wider than 32 bits'):
        StreamFormat(4, 2, FixedType(40, 4), FixedType(8, 4))


@pytest.mark.parametrize('io_type', ['io_parallel', 'io_stream'])
def test_the_accelerator_top_follows_the_io_type(tmp_path, io_type):
    """io_parallel keeps its array top; io_stream gets the DATAFLOW top over nnet::array packs;
    header, bridge and testbench are shared. Nothing compiled here (tests/test_accel_stream.py does)."""
    from flow.stages.accel import ACCEL_DIR, write_sources

    (tmp_path / 'firmware').mkdir()
    fmt = StreamFormat(72, 4, FixedType(8, 4), FixedType(24, 12))
    files = write_sources(tmp_path, 'net', fmt, io_type=io_type)
    assert [p.name for p in files] == ['net_axi.h', 'net_axi.cpp', 'net_axi_bridge.cpp', 'net_axi_tb.cpp']
    top = (tmp_path / 'firmware' / 'net_axi.cpp').read_text()
    assert ('#pragma HLS DATAFLOW' in top) == (io_type == 'io_stream')
    assert 'void net_axi(hls::stream<axis_word_t> &in_stream, hls::stream<axis_word_t> &out_stream)' in top
    assert '@' not in top and 'net(x, y);' in top
    if io_type == 'io_parallel':  # the array top as it always was
        assert top.startswith((ACCEL_DIR / 'axi_top.cpp.in').read_text().split('@PROJECT@')[0])
        assert 'input_t x[accel::n_in];' in top


def test_an_unknown_io_type_has_no_top(tmp_path):
    from flow.stages.accel import write_sources

    with pytest.raises(ValueError, match="io_type 'io_serial' has no accelerator top"):
        write_sources(tmp_path, 'net', StreamFormat(4, 2, FixedType(8, 4), FixedType(8, 4)), io_type='io_serial')
