"""Fixed-point conversions: hand-worked cases, and ap_fixed itself (compiled with g++) as the oracle."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from flow.runtime.fixed import FixedType, OVERFLOW, ROUNDING


def test_hand_worked_rounding():
    # 5 codes at 2 fractional bits: 1.25, 1.5, 2.5, -1.5, -2.5 -> integers (frac 0)
    codes = np.array([5, 6, 10, -6, -10])
    expect = {
        'TRN': [1, 1, 2, -2, -3],
        'TRN_ZERO': [1, 1, 2, -1, -2],
        'RND': [1, 2, 3, -1, -2],
        'RND_ZERO': [1, 1, 2, -1, -2],
        'RND_MIN_INF': [1, 1, 2, -2, -3],
        'RND_INF': [1, 2, 3, -2, -3],
        'RND_CONV': [1, 2, 2, -2, -2],
    }
    for mode, want in expect.items():
        t = FixedType(8, 8, rounding=mode)
        assert t.from_codes(codes, 2).tolist() == want, mode


def test_hand_worked_overflow():
    t = FixedType(4, 4)  # signed 4-bit integer: -8..7
    assert t.from_codes([7, 8, 9, -9, 16], 0).tolist() == [7, -8, -7, 7, 0]  # WRAP
    assert FixedType(4, 4, overflow='SAT').from_codes([8, -9], 0).tolist() == [7, -8]
    assert FixedType(4, 4, overflow='SAT_SYM').from_codes([8, -9], 0).tolist() == [7, -7]
    assert FixedType(4, 4, overflow='SAT_ZERO').from_codes([8, -9, 3], 0).tolist() == [0, 0, 3]
    assert FixedType(4, 4, signed=False, overflow='SAT').from_codes([-1, 16, 5], 0).tolist() == [0, 15, 5]


def test_parse_and_print_round_trip():
    for text in ['ap_fixed<16,6>', 'ap_ufixed<6,2,AP_RND_CONV,AP_SAT>', 'ap_fixed<8,-2,AP_RND,AP_SAT_SYM>']:
        assert FixedType.parse(text).hls() == text
    with pytest.raises(ValueError, match='cannot parse'):
        FixedType.parse('float')


def test_from_float_exact_names_the_offending_element():
    t = FixedType(6, 2)
    assert t.from_float_exact([0.25, -2.0, 1.9375]).tolist() == [4, -32, 31]
    with pytest.raises(ValueError, match=r'index \(1,\)'):
        t.from_float_exact([0.25, 0.03125])
    with pytest.raises(ValueError, match='not representable'):
        t.from_float_exact([2.0])


CPP = r'''
#include <cstdio>
#include "ap_fixed.h"
template <class S, class D> void conv(long long code, bool dst_signed) {
    S s; s.range() = code;            // load the raw bits
    D d = s;                          // the assignment under test
    ap_uint<64> bits = d.range();
    long long out = (long long)bits.to_uint64();
    int w = D::width;
    if (dst_signed && ((out >> (w - 1)) & 1)) out -= (1LL << w);
    printf("%lld\n", out);
}
int main() {
%s
}
'''


@pytest.mark.csim
def test_against_ap_fixed(tmp_path, rng):
    """Random source/destination types, all rounding and overflow modes, vs Xilinx ap_fixed."""
    import hls4ml

    ap_types = Path(hls4ml.__file__).parent / 'templates' / 'vivado' / 'ap_types'
    cases, calls = [], []
    for _ in range(60):
        sw = int(rng.integers(2, 30))
        src = FixedType(sw, int(rng.integers(0, sw + 1)), signed=bool(rng.integers(0, 2)))
        dw = int(rng.integers(1, 24))
        dst = FixedType(dw, int(rng.integers(0, dw + 1)), signed=bool(rng.integers(0, 2)),
                        rounding=str(rng.choice(ROUNDING)), overflow=str(rng.choice(OVERFLOW)))
        codes = rng.integers(src.min_code, src.max_code + 1, size=20)
        for c in codes:
            cases.append((src, dst, int(c)))
            calls.append(f'    conv<{src.hls()}, {dst.hls()}>({int(c)}LL, {str(dst.signed).lower()});')
    (tmp_path / 't.cpp').write_text(CPP.replace('%s', '\n'.join(calls)))
    subprocess.run(['g++', '-O0', '-std=c++14', f'-I{ap_types}', 't.cpp', '-o', 't'], cwd=tmp_path, check=True)
    out = subprocess.run([str(tmp_path / 't')], capture_output=True, text=True, check=True).stdout.split()
    for (src, dst, c), got in zip(cases, out):
        want = int(dst.from_codes(np.array([c]), src.frac)[0])
        assert want == int(got), f'{src.hls()} code {c} -> {dst.hls()}: ap_fixed {got}, reference {want}'
