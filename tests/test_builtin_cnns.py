"""The built-in CNNs keywords_dscnn (depthwise-separable, CGS 1x1 pointwise convolutions) and
fashion_resnet (residual blocks of CGS convolutions joined by Add): their integer reference equals
QKeras on every layer, and their built-in ReuseFactors fit a PYNQ-Z2 by the estimate. (Their C
simulation is checked by build-bitstream's verify step: bench/bench_builtin_cnns.py.)"""

import numpy as np
import pytest

from flow.config import FlowConfig
from flow.export import reference_for


def _random_weights(model, seed=0):
    """Every trainable weight uniform (kernels in [-1, 1], biases in [-2, 2]): built's Glorot kernels mostly
    quantize to 0 at 4 bits. The masks are not trainable: they stay."""
    rng = np.random.default_rng(seed)
    for w in model.trainable_weights:
        w.assign(rng.uniform(-2, 2, w.shape) if 'bias' in w.name else rng.uniform(-1, 1, w.shape))
    return model


@pytest.mark.parametrize('name, kinds', [
    ('keywords_dscnn', {'depthwise_conv2d': 3, 'block_sparse_conv2d': 3}),
    ('fashion_resnet', {'block_sparse_conv2d': 5, 'merge': 2}),
])
def test_builtin_cnn_reference_equals_qkeras_and_fits_the_board(name, kinds):
    from flow.infra.boards import get_board
    from flow.plan import make_plan
    from flow.stages.estimate import estimate_model
    from flow.stages.verify import qkeras_comparable, qkeras_outputs, to_codes
    from keras_models import get

    cfg = FlowConfig.load(None, model=name)
    model = _random_weights(get(name).build(0))
    im = reference_for(model, cfg)
    found = [layer.kind for layer in im.layers]
    assert {k: found.count(k) for k in kinds} == kinds
    names, why = qkeras_comparable(im)
    assert names == [layer.name for layer in im.layers[1:]], why  # every layer, the pooling and the Add included
    rng = np.random.default_rng(0)
    t = im.in_type
    codes = rng.integers(t.min_code, t.max_code + 1, (8, int(np.prod(im.input.shape))))
    codes[0], codes[1] = t.max_code, t.min_code
    q, trace = qkeras_outputs(model, im, t.to_float(codes)), im.trace(codes)
    for layer in im.layers[1:]:
        assert np.array_equal(to_codes(q[layer.name], layer.out_type.frac).reshape(trace[layer.name].shape),
                              trace[layer.name]), layer.name
    assert np.ptp(trace[im.layers[-1].name]) > 0  # the random weights reach the logits

    board = get_board('pynq-z2')
    plan = make_plan(im, cfg, board)
    assert plan.io_type == 'io_stream'
    est = estimate_model(im, plan, board)['total']
    assert est['fits'] and est['fit']['dsp']['used'] <= board.resources.dsp
