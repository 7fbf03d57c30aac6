"""The SST layer's engine as Verilog (flow/rtl/sst_engine.py), from the static structure its HLS kernel
is generated from (flow/runtime/sst_engine.py): Verilated on exported QKeras layers, exact against
the reference, one sample per ReuseFactor cycles back to back."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from test_sst import sst_cases, sst_model

from flow.rtl import tools
from flow.rtl.engines import rtl_engine
from flow.runtime.fixed import FixedType

pytestmark = [pytest.mark.rtl, pytest.mark.skipif(bool(tools.missing()), reason=f'RTL tools missing: {tools.missing()}')]


def exported(kw, in_t=FixedType(6, 2), n=24, seed=0):
    """The integer model of ``sst_model(**kw)`` and its trace on ``n`` random input vectors."""
    from flow.export import to_integer_model

    im = to_integer_model(sst_model(**kw), in_t)
    x = np.random.default_rng(seed).integers(in_t.min_code, in_t.max_code + 1, (n, kw.get('n_in', 32)))
    return im, im.trace(x)


def engines(im, rf: int, names=('sst0', 'sst1')) -> list:
    """(layer, the layer it reads, its engine at ``rf``) for the SST layers ``names``, as the rtl step lists them."""
    out, prev = [], im.layers[0]
    for layer in im.layers[1:]:
        if layer.name in names:
            out.append((layer, prev, rtl_engine(layer, min(rf, int(layer.codes.size)), prev.out_type)))
        prev = layer
    return out


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(sst_cases())
def test_sst_engine_equals_reference(tmp_path_factory, case):
    """Random shapes, (N, K), scales (power-of-two / fixed-point, per output / per layer) and
    ReuseFactors: the rtl step's check (simulate_engines raises naming the first element that
    differs) on both layers, the second reading the unsigned ReLU output; back to back."""
    from flow.rtl.build import simulate_engines

    kw, rf = case
    im, trace = exported(kw)
    built = engines(im, rf)
    out = simulate_engines(built, trace, tmp_path_factory.mktemp('sst_engine'), 'p')
    for layer, _, design in built:
        n = len(trace[layer.name])
        assert out[layer.name]['cycles_per_sample'] == (n * design.rf + 3) / n and out[layer.name]['latency'] == design.rf + 3
        assert out[layer.name]['organisation'].startswith(f'sst ({layer.group}, {layer.nonzeros})')


@pytest.mark.parametrize('mutation', ['decode', 'gate', 'scale'])
def test_a_wrong_sst_engine_is_caught(tmp_path, monkeypatch, mutation):
    """Each part of the engine can fail the check: a decoder slot's sign, a source's cycle gate,
    the output's constant scale. The reference names the layer and element."""
    from flow.rtl import build, sst_engine
    from flow.stages.verify import Mismatch

    im, trace = exported(dict(n_in=32, units=(8, 4), group=(8, 4), k=(2, 2), per_output=(True, False)))
    good = sst_engine.sst_verilog

    def bad(*a):
        v = good(*a)
        if mutation == 'decode':  # decoder 0's first slot adds where it subtracts
            return v.replace('? -v0_0 :', '? v0_0 :', 1)
        if mutation == 'gate':  # a decoder's part reaches its first output one cycle longer
            return re.sub(r'cnt1 <= (\d+)', lambda m: f'cnt1 <= {int(m[1]) + 1}', v, count=1)
        return v.replace('(se0 * ', '(se0 * 3 * ', 1)

    monkeypatch.setattr(sst_engine, 'sst_verilog', bad)
    with pytest.raises(Mismatch, match=r"RTL engine \(sst \(8, 2\).*layer 'sst0', sample \d+, element"):
        build.simulate_engines(engines(im, 8, ('sst0',)), trace, tmp_path, 'p')
    monkeypatch.undo()  # as generated: exact, sst1 too (unsigned ReLU inputs, (4, 2): N:1 picks of two slots)
    build.simulate_engines(engines(im, 8), trace, tmp_path / 'ok', 'p')


@pytest.mark.csim
def test_rtl_engines_builds_the_sst_engines_in_the_flow(tmp_path):
    """``rtl: engines`` in a user's config: no da4ml network (the report says why), each SST layer's
    engine Verilated exact on the golden vectors and synthesized; the estimate's LUT/FF measured."""
    import json

    from flow.config import FlowConfig
    from flow.steps import run_flow

    sst_model(n_in=32, units=(8, 4), group=(8, 4), k=(2, 2)).save(tmp_path / 'sst.h5')
    cfg = FlowConfig.load(None, model=str(tmp_path / 'sst.h5'), input_precision='ap_fixed<6,2>', n_golden=16, rtl='engines',
                          layers={'sst0': {'reuse_factor': 8}, 'sst1': {'reuse_factor': 2}})
    b = run_flow(cfg, tmp_path / 'b', to_step='estimate').root
    rtl = json.loads((b / 'reports' / 'rtl_resources.json').read_text())
    assert rtl['built'] is False and rtl['reason'].startswith('rtl: engines in the config')
    assert set(rtl['engines']) == {'sst0', 'sst1'} and all(e['lut'] > 0 for e in rtl['engines'].values())
    assert [rtl['engines'][n]['reuse_factor'] for n in ('sst0', 'sst1')] == [8, 2]
    verify = json.loads((b / 'reports' / 'verify.json').read_text())['rtl']
    assert verify['equal_vectors'] == 16 and verify['exact'] and set(verify['engines']) == {'sst0', 'sst1'}
    est = json.loads((b / 'reports' / 'estimate.json').read_text())
    assert est['layers']['sst0']['ours']['lut_measured'] == rtl['engines']['sst0']['lut']
    assert est['total']['fit']['lut']['source'] == 'measured'
