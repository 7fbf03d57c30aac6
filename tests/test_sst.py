"""SST (structured sparse ternary) codes: the code tables, the Keras layer, the reference, the
multiplication-free HLS template (C simulation == reference) and the footprint."""

import itertools
import re
from math import comb
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow.runtime.fixed import FixedType
from flow.runtime.sst_code import SSTCode, SSTCodeError

TEMPLATE = Path(__file__).resolve().parents[1] / 'hls_templates' / 'nnet_sst_dense.h'


# --- codes --------------------------------------------------------------------------------------


@pytest.mark.parametrize('n', range(1, 7))
def test_code_is_a_bijection_exhaustively(n):
    for k in range(1, n + 1):
        code = SSTCode(n, k)
        assert code.n_patterns == sum(comb(n, i) * 2**i for i in range(k + 1))
        seen = set()
        for t in itertools.product((-1, 0, 1), repeat=n):
            if np.count_nonzero(t) > k:
                with pytest.raises(SSTCodeError, match='non-zeros'):
                    code.encode_group(np.array(t))
                continue
            c = code.encode_group(np.array(t))
            assert 0 <= c < code.n_patterns and c not in seen
            seen.add(c)
            assert tuple(code.decode_group(c)) == t
        assert len(seen) == code.n_patterns


def test_paper_code_8_2():
    code = SSTCode(8, 2)
    assert (code.n_patterns, code.code_bits) == (129, 8)  # 1 + 8*2 + 28*4: 8 bits per 8 weights
    rom = code.decoder_rom()
    for c in range(code.n_patterns):  # the decoder ROM the template reads is the decoder
        t = np.zeros(8, dtype=int)
        for e in rom[c]:
            if e:
                t[abs(e) - 1] = np.sign(e)
        assert np.array_equal(t, code.decode_group(c))


@settings(max_examples=60, deadline=None)
@given(st.integers(7, 40), st.data())
def test_code_round_trips_for_large_groups(n, data):
    k = data.draw(st.integers(1, min(n, 6)))
    code = SSTCode(n, k)
    pos = data.draw(st.lists(st.integers(0, n - 1), max_size=k, unique=True))
    t = np.zeros(n, dtype=int)
    t[pos] = data.draw(st.lists(st.sampled_from([-1, 1]), min_size=len(pos), max_size=len(pos)))
    c = code.encode_group(t)
    assert 0 <= c < code.n_patterns and np.array_equal(code.decode_group(c), t)
    c2 = data.draw(st.integers(0, code.n_patterns - 1))
    assert code.encode_group(code.decode_group(c2)) == c2
    with pytest.raises(SSTCodeError, match='outside'):
        code.decode_group(code.n_patterns)


def test_kernel_encode_decode():
    rng = np.random.default_rng(0)
    code = SSTCode(4, 2)
    t = np.zeros((16, 5), dtype=int)
    for g in range(4):
        for o in range(5):
            p = rng.choice(4, size=rng.integers(0, 3), replace=False)
            t[g * 4 + p, o] = rng.choice([-1, 1], size=len(p))
    codes = code.encode(t)
    assert codes.shape == (5, 4) and np.array_equal(code.decode(codes), t)
    with pytest.raises(SSTCodeError, match='multiple of the group'):
        code.encode(np.zeros((6, 2)))


# --- the Keras layer ----------------------------------------------------------------------------


def sst_model(n_in=32, units=(12, 4), group=(8, 4), k=(2, 3), per_output=(True, False), scale_q=(None, None), seed=0,
              prune_steps=0):
    import tensorflow as tf
    from qkeras import QActivation, quantized_bits, quantized_relu

    from keras_models.sst import SSTQDense

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((n_in,), name='x')
    x = inp
    for i, (u, g, kk, po, sq) in enumerate(zip(units, group, k, per_output, scale_q)):
        if i:
            x = QActivation(quantized_relu(5, 1), name=f'act{i}')(x)
        extra = {'scale_quantizer': sq} if sq else {}
        x = SSTQDense(u, group=g, nonzeros=kk, per_output_scale=po, bias_quantizer=quantized_bits(8, 3, alpha=1),
                      prune_steps=prune_steps, name=f'sst{i}', **extra)(x)
    model = tf.keras.Model(inp, x)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if hasattr(layer, 'scale'):
            layer.kernel.assign(rng.normal(size=layer.kernel.shape))
            layer.scale.assign(rng.uniform(0.05, 0.6, size=layer.scale.shape))
            layer.bias.assign(rng.uniform(-2, 2, size=layer.bias.shape))
    return model


def test_ternary_kernel_is_the_layers_own_top_k():
    """The exporter and the hls4ml extension use ternary_kernel (numpy); inference uses TensorFlow's
    top_k: equal on every weight, ties included (they keep the lower index)."""
    from keras_models.sst import ternary_kernel

    model = sst_model()
    layer = model.get_layer('sst0')
    rng = np.random.default_rng(1)
    layer.kernel.assign(rng.integers(-2, 3, size=layer.kernel.shape).astype(np.float32))  # many ties and zeros
    got = ternary_kernel(layer.kernel.numpy(), 8, 2)
    assert np.array_equal(layer._ternary(2).numpy(), got)
    groups = np.abs(got).T.reshape(12, 4, 8).sum(axis=-1)
    assert groups.max() <= 2 and groups.max() == 2


def test_training_prunes_gradually_to_the_code():
    import tensorflow as tf

    model = sst_model(prune_steps=6)
    layer = model.get_layer('sst0')
    assert int(layer._allowed(True)) == 8 and int(layer._allowed(False)) == 2  # step 0: nothing pruned yet
    model.compile(tf.keras.optimizers.Adam(0.01), 'mse')
    x = np.random.default_rng(0).uniform(0, 1, (64, 32)).astype(np.float32)
    model.fit(x, np.zeros((64, 4)), batch_size=8, epochs=1, verbose=0)
    assert int(layer.sst_step.numpy()) == 8 and int(layer._allowed(True)) == 2
    rms = np.sqrt(np.mean(layer.kernel.numpy() ** 2, axis=0))
    assert np.allclose(rms, 1.0, atol=1e-5)  # float: the normalization constraint's own arithmetic


def test_reference_equals_qkeras_code_for_code(tmp_path):
    from flow.export import to_integer_model
    from flow.runtime.reference import IntegerModel
    from flow.stages.verify import qkeras_comparable, qkeras_outputs

    model = sst_model(scale_q=(None, 'quantized_bits(6, 2, alpha=1)'))
    in_t = FixedType(8, 2)
    im = to_integer_model(model, in_t)
    assert [l.kind for l in im.layers] == ['input', 'sst_dense', 'relu', 'sst_dense']
    assert im.layers[1].scale_po2 and not im.layers[3].per_output_scale
    names, why = qkeras_comparable(im)
    assert names == ['sst0', 'act1', 'sst1'], why
    x = np.random.default_rng(0).integers(in_t.min_code, in_t.max_code + 1, (200, 32))
    trace = im.trace(x)
    by_name = {l.name: l for l in im.layers}
    q = qkeras_outputs(model, im, in_t.to_float(x))
    for name in names:  # exact: QKeras' float32 values are the codes' values
        assert np.array_equal(q[name] * 2.0**by_name[name].out_type.frac, trace[name]), name
    im.save(tmp_path)
    again = IntegerModel.load(tmp_path)
    assert np.array_equal(again.trace(x)['sst1'], trace['sst1'])
    # the board decodes the codewords with the shipped numpy-only runtime
    from shipped_runtime import predict_with_shipped_runtime

    assert np.array_equal(predict_with_shipped_runtime(tmp_path / 'board_run', im, x[:20]), trace['sst1'][:20])


def test_bad_sst_layers_are_refused_with_the_fix():
    import tensorflow as tf

    from keras_models.sst import SSTQDense

    with pytest.raises(ValueError, match='group 8 does not divide its 20 inputs'):
        SSTQDense(4, group=8)(tf.keras.Input((20,)))
    with pytest.raises(ValueError, match='do not pass kernel_quantizer'):
        SSTQDense(4, kernel_quantizer='quantized_bits(4,0,alpha=1)')
    with pytest.raises(ValueError, match='1 <= nonzeros <= group'):
        SSTQDense(4, group=4, nonzeros=5)


def test_footprint_and_estimate():
    """(8, 2): a codeword of 8 bits per 8 weights, so 32x smaller than float32 on the kernel; no
    multiplier with a power-of-two scale, one constant product per output with a fixed-point one."""
    from flow.stages.estimate import layer_estimate
    from flow.export import to_integer_model
    from flow.stages.footprint import footprint

    model = sst_model(n_in=64, units=(32, 4), scale_q=(None, 'quantized_bits(6, 2, alpha=1)'))
    im = to_integer_model(model, FixedType(8, 2))
    sst0, sst1 = im.layers[1], im.layers[3]
    fp = footprint(im)['layers']['sst0']
    assert fp['weight_bits'] == 64 * 32  # 1 bit per weight
    assert fp['index_bits'] == 129 * 2 * 5  # the decoder ROM: 2 entries of -8..8 per pattern
    assert fp['scale_bits'] == 32 * sst0.scale_type.width
    assert fp['dense_float32_bits'] - 32 * 32 == 32 * fp['weight_bits']
    est = layer_estimate(sst0, 8, in_type=FixedType(8, 2))
    assert est['ours']['multipliers'] == 0 and est['ours']['cycles'] == 8
    assert est['ours']['weight_memory_bits'] == 256 * 8  # 32 outputs x 8 groups, 8-bit codewords
    assert layer_estimate(sst1, 2, in_type=FixedType(5, 1))['ours']['multipliers'] == 4


# --- the template has no multiplier on data -----------------------------------------------------


def _function_body(source: str, name: str) -> str:
    start = re.search(rf'\b{name}\([^;{{]*\)\s*\{{', source).end() - 1  # the definition, whatever it returns
    depth = 0
    for i in range(start, len(source)):
        depth += {'{': 1, '}': -1}.get(source[i], 0)
        if depth == 0:
            return source[start:i + 1]
    raise ValueError(f'unbalanced braces in {name}')


def _drop_loop(body: str, label: str) -> str:
    """Remove the labelled loop ``label: for (...) {...}``."""
    i = body.index(f'{label}:')
    j = body.index('{', i)
    depth = 0
    for k in range(j, len(body)):
        depth += {'{': 1, '}': -1}.get(body[k], 0)
        if depth == 0:
            return body[:i] + body[k + 1:]
    raise ValueError(label)


IDENT = re.compile(r'[A-Za-z_]\w*')


def products_on_data(source: str, function: str, exempt: str | None = 'ApplyScale', inputs=('data',)) -> list[str]:
    """Statements of ``function`` (outside the ``exempt`` loop) that multiply and involve a value
    derived from the ``inputs``: taint flows through every assignment."""
    body = re.sub(r'//[^\n]*|/\*.*?\*/', '', _function_body(source, function), flags=re.S)
    body = re.sub(r'#pragma[^\n]*', '', body)
    if exempt:
        body = _drop_loop(body, exempt)
    statements = [s.strip() for s in re.split(r'[;{}]', body) if s.strip()]
    tainted = set(inputs)
    for _ in range(len(statements)):
        for s in statements:
            m = re.match(r'(?:[\w:<>,\s]*\s)?(\w+)\s*(?:\[[^\]]*\])?\s*([-+*/]?=)(?!=)(.*)', s, flags=re.S)
            if m and m.group(1) not in tainted and tainted & set(IDENT.findall(m.group(3))):
                tainted.add(m.group(1))
    product = re.compile(r'[\w\])]\s*\*\s*[\w(]')
    return [s for s in statements if product.search(s) and tainted & set(IDENT.findall(s))]


def kernel_products_on_data(source: str, index: int) -> list[str]:
    """products_on_data over the generated kernel sst_dense_<index> and its slot select."""
    from flow.hls.sst_emit import function_name

    name = function_name(index)
    n = len(re.search(rf'{name}_pick\(unsigned p, ([^)]*)\)', source)[1].split(','))
    return products_on_data(source, name) + products_on_data(source, f'{name}_pick', None, [f'x{j}' for j in range(n)])


def test_generated_kernel_has_no_product_on_data():
    from flow.hls.sst_emit import layer_kernel

    source = layer_kernel(24, 5, 8, 2, 7, 2)  # 3 groups, 15 work items, 3 decoders (one padded), 7 cycles
    assert kernel_products_on_data(source, 2) == []
    # the check can fail: a product of a decoded position (a weight) and an input, direct or through a variable
    bad = source.replace('part0 = n0_0 ? sum_t(part0 - v0_0)', 'part0 = n0_0 ? sum_t(part0 - v0_0 * p0_0)')
    assert kernel_products_on_data(bad, 2) == ['part0 = n0_0 ? sum_t(part0 - v0_0 * p0_0) : sum_t(part0 + v0_0)']
    bad = source.replace('case 2: return (sum_T)x1;', 'case 2: const sum_T y = x1;\n return y * p;')
    assert kernel_products_on_data(bad, 2) == ['return y * p']


def _run_engine(eng, codes, x):
    """The static structure run as the kernel does (codeword ROM padded with 0, decoder ROM, group
    selects by the case tables, gated per-output sums): the +-input sums per output."""
    rom = SSTCode(eng.group, eng.nonzeros).decoder_rom()
    padded = np.zeros(eng.n_dec * eng.rf, dtype=np.int64)
    padded[:codes.size] = codes.reshape(-1)
    sums = np.zeros((len(x), eng.n_out), dtype=np.int64)
    for t in range(eng.rf):
        part = {}
        for d, s in enumerate(eng.decoders):
            sel = eng.selects[s]
            g = next((g for ts, g in sel.legs if t in ts), sel.default)
            part[d] = sum(np.sign(e) * x[:, g * eng.group + abs(e) - 1] for e in rom[padded[d * eng.rf + t]] if e)
        for o, srcs in eng.sources.items():
            for d, gate in srcs:
                if gate.ranges is None or any(lo <= t <= hi for lo, hi in gate.ranges):
                    sums[:, o] += part[d]
    return sums


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([1, 2, 3, 4, 8]), st.integers(1, 5), st.integers(1, 13), st.data())
def test_static_structure_computes_the_layer(group, n_groups, n_out, data):
    """The group selects, decoders and gated source lists of flow/runtime/sst_engine.py give the
    reference's +-input sums for any shape and ReuseFactor; nothing depends on a divider at run time."""
    from flow.runtime.sst_engine import sst_engine

    k = data.draw(st.integers(1, min(group, 3)))
    n_in, code = group * n_groups, SSTCode(group, k)
    rf = data.draw(st.integers(1, n_out * n_groups))
    eng = sst_engine(n_in, n_out, group, k, rf)
    assert eng.n_dec == -(-n_out * n_groups // rf)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    codes = rng.integers(0, code.n_patterns, size=(n_out, n_groups))
    x = rng.integers(-64, 64, size=(5, n_in))
    assert np.array_equal(_run_engine(eng, codes, x), x @ code.decode(codes).astype(np.int64))
    # every output is reached, and every select leg is a group that some decoder reads then
    assert sorted(eng.sources) == list(range(n_out))
    for sel in eng.selects:
        assert all(0 <= g < n_groups for _, g in sel.legs) and 0 <= sel.default < n_groups


# --- co-simulation: the C simulation equals the reference ---------------------------------------


@st.composite
def sst_cases(draw):
    group = draw(st.sampled_from([2, 4, 8, 16]))
    n_in = group * draw(st.integers(1, 4))
    k = draw(st.integers(1, min(group, 4)))
    units = draw(st.sampled_from([3, 8, 13]))
    n_work = units * (n_in // group)
    rf = draw(st.integers(1, n_work))
    per_output = draw(st.booleans())
    scale_q = draw(st.sampled_from([None, 'quantized_po2(4)', 'quantized_bits(5, 1, alpha=1)']))
    return dict(n_in=n_in, units=(units, 3), group=(group, 1), k=(k, 1), per_output=(per_output, True),
                scale_q=(scale_q, None), seed=draw(st.integers(0, 99))), rf


@pytest.mark.csim
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(sst_cases())
def test_sst_csim_equals_reference(tmp_path_factory, case):
    """Random shapes, (N, K), scales (po2 / fixed-point, per output / per layer) and ReuseFactors:
    C simulation == reference on every output code (check_cosim raises naming the first layer and
    element that differ); the generated C++ calls our multiplication-free template."""
    from flow.config import FlowConfig
    from test_cosim import check_cosim

    kw, rf = case
    tmp = tmp_path_factory.mktemp('sst')
    model = sst_model(**kw)
    cfg = FlowConfig.load(None, model='user.h5', layers={'sst0': {'reuse_factor': rf}})
    im, _ = check_cosim(tmp, model, FixedType(6, 2), cfg)
    cpp = (tmp / 'hls' / 'firmware' / 'sparsenet.cpp').read_text()
    assert re.search(r'nnet::sst_dense<[^;]*>\(x, layer2_out', cpp), 'sst0 must be built by nnet::sst_dense'
    assert kernel_products_on_data((tmp / 'hls' / 'firmware' / 'nnet_utils' / 'nnet_code_gen.h').read_text(), 2) == []


def test_float32_bound_keeps_outputs_with_different_scales_apart():
    """Per-output power-of-two scales 2^-20 and 1: the generic bound puts both on a 2^-20 grid and
    exceeds 2^24, but QKeras multiplies each output's exact +-x sum by its own scale: exact."""
    from flow.runtime.ref_sst import SSTDense
    from flow.stages.verify import FLOAT32_EXACT_INT

    code = SSTCode(4, 2)
    t = np.zeros((8, 2), dtype=int)
    t[[0, 5], 0], t[[1, 2], 1] = 1, -1
    in_t, s_t, b_t = FixedType(8, 8, signed=False), FixedType(23, 3), FixedType(8, 3)
    layer = SSTDense('s', out_type=FixedType(40, 20), weight_type=s_t, bias_type=b_t, accum_type=FixedType(60, 20),
                     bias=np.array([3, -5]), n_in=8, n_out=2, group=4, nonzeros=2, scale_type=s_t, sum_type=FixedType(12, 12),
                     codes=code.encode(t), scale=np.array([1, 1 << 20]))
    assert layer.sum_bound(in_t)[0] > FLOAT32_EXACT_INT
    # output 0 (scale 2^-20): 510 + bias 3/32 on the 2^-20 grid; output 1 (scale 1): 510 * 32 + 5 on the bias's 2^-5 grid
    assert layer.float32_bound(in_t) == max(510 + (3 << 15), (510 << 5) + 5)
    x = np.array([[255] * 8, [0, 7, 3, 1, 0, 9, 2, 0]])
    want = (x @ t) * np.array([1, 1 << 20]) + (np.array([3, -5]) << 15)
    assert np.array_equal(layer.forward(x, in_t), want)


@pytest.mark.slow
def test_builtin_sst_model_runs_the_flow_bit_exact(tmp_path):
    """The built-in fashion_sst_mlp (untrained: the flow's exactness does not depend on training)
    through the flow: C simulation == reference on every golden vector, no multiplier in its SST
    layers, 1 bit per weight."""
    import json

    from flow.config import FlowConfig
    from flow.steps import run_flow

    # its SST engines (rtl: engines, about 5 minutes) are tested on smaller layers: tests/test_sst_engine.py
    run_flow(FlowConfig.load(None, model='fashion_sst_mlp', epochs=0, n_golden=32, rtl=False), tmp_path, to_step='estimate')
    report = json.loads((tmp_path / 'reports' / 'verify.json').read_text())
    assert report['reference_vs_csim'] == {'equal_vectors': 32, 'exact': True}
    assert report['accelerator_testbench'].startswith('PASS: 32 samples,')
    est = json.loads((tmp_path / 'reports' / 'estimate.json').read_text())['layers']
    assert est['fc1']['ours']['multipliers'] == est['fc2']['ours']['multipliers'] == 0
    fp = json.loads((tmp_path / 'reference' / 'footprint.json').read_text())['layers']
    assert fp['fc1']['weight_bits'] == 784 * 128 and fp['fc2']['weight_bits'] == 128 * 64


def test_a_different_generated_kernel_is_a_conversion_mismatch(tmp_path):
    """The kernel hls4ml writes into nnet_code_gen.h must be the reference layer's: a moved source is caught."""
    from hls4ml.model.types import Source

    from flow.config import FlowConfig
    from flow.export import to_integer_model
    from flow.hls.sst_emit import CODE_ATTR
    from flow.infra.boards import get_board
    from flow.plan import make_plan
    from flow.stages.convert import ConversionMismatch, check_against_reference, convert_model

    model = sst_model()
    cfg = FlowConfig.load(None, model='user.h5', layers={'sst0': {'reuse_factor': 5}})
    im = to_integer_model(model, FixedType(6, 2))
    hls_model = convert_model(model, im, cfg, get_board('pynq-z2'), tmp_path / 'hls')
    plan = make_plan(im, cfg, get_board('pynq-z2'))
    check_against_reference(hls_model, im, plan)
    node = hls_model.graph['sst0']
    code = str(node.get_attr(CODE_ATTR))
    assert 'switch (t)' in code and ' / ' not in code and ' % ' not in code
    node.set_attr(CODE_ATTR, Source(code.replace('sum[0] = sum_t(sum[0] +', 'sum[1] = sum_t(sum[1] +', 1)))
    with pytest.raises(ConversionMismatch, match=r"layer 'sst0': hls4ml's generated SST kernel is not the one"):
        check_against_reference(hls_model, im, plan)
