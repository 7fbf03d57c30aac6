"""A whole Keras model -> the integer reference: the deployability check (every layer has an
exporter, names are C++ identifiers, one input and output), the node order hls4ml builds, and
the checks on the tensor flowing between layers."""

from __future__ import annotations

import functools
import re

import numpy as np

from flow.export.activations import TABLE_LAYERS, _activation_exporter, activation_spec, is_softmax, export_activation, export_activation_spec, fused_activation
from flow.export.registry import DEPLOY_REWRITES, EXPORTERS, Overrides, UnsupportedModel, _compute_layers, input_layer_name, keras_inbound, layer_overrides, rebuild
from flow.runtime.fixed import FixedType
from flow.runtime.ref_layers import Input
from flow.runtime.reference import IntegerModel


# hls4ml turns layer names into C++ identifiers (defines.h, parameters.h, weights/<name>.txt)
C_IDENTIFIER = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


CPP_KEYWORDS = frozenset(
    'alignas alignof and and_eq asm auto bitand bitor bool break case catch char char16_t char32_t class compl const '
    'constexpr const_cast continue decltype default delete do double dynamic_cast else enum explicit export extern '
    'false float for friend goto if inline int long mutable namespace new noexcept not not_eq nullptr operator or '
    'or_eq private protected public register reinterpret_cast return short signed sizeof static static_assert '
    'static_cast struct switch template this thread_local throw true try typedef typeid typename union unsigned '
    'using virtual void volatile wchar_t while xor xor_eq'.split()
)


STREAM_MAX_BITS = 32  # the AXI4-Stream format carries codes in 8/16/32-bit lanes (runtime/stream.py)


# What to change, for Keras/QKeras layers users commonly have that this flow cannot deploy.
UNSUPPORTED_FIX = {
    'LeakyReLU': 'use QActivation(quantized_relu(bits, integer)) (negative_slope=0)',
    'QBatchNormalization': "use a Keras BatchNormalization (the reference mirrors hls4ml's float32 scale and bias)",
    'QDenseBatchnorm': 'use a QDense followed by a Keras BatchNormalization',
    'InputLayer': 'the model must have a single input',
    **{f'Q{c}': f'hls4ml 1.3.0 does not convert it; use Keras {c} (deployed exactly as hls4ml averages) followed by '
                'QActivation(quantized_bits(bits, integer)) to quantize the average'
       for c in ('AveragePooling2D', 'GlobalAveragePooling2D')},
    'UpSampling3D': 'hls4ml has no io_stream template for it; use UpSampling2D',
    'Conv1D': 'use qkeras.QConv1D with kernel_quantizer=quantized_bits(bits, integer, alpha=1) and a bias_quantizer '
              '(float weights cannot be reproduced bit-exactly), or keras_models.conv.BlockSparseQConv1D',
    **{c: f'use qkeras.Q{c} with depthwise_quantizer{"/pointwise_quantizer" if "Separable" in c else ""}='
          'quantized_bits(bits, integer, alpha=1) and a bias_quantizer (float weights cannot be reproduced bit-exactly)'
       for c in ('DepthwiseConv2D', 'SeparableConv2D', 'SeparableConv1D')},
    'DepthwiseConv1D': 'QKeras has no quantized DepthwiseConv1D: use qkeras.QSeparableConv1D (depthwise then 1x1) or QConv1D',
    **{c: 'use keras_models.lstm.BlockSparseQLSTM (quantized, hard sigmoid/tanh, block masks shared by the 4 gates; '
          'drop_rate=0 keeps every weight): the one recurrent layer with an exact reference and HLS template'
       for c in ('LSTM', 'QLSTM')},
    **{c: 'recurrent layers other than LSTM have no template; use keras_models.lstm.BlockSparseQLSTM'
       for c in ('GRU', 'SimpleRNN', 'QGRU', 'QSimpleRNN')},
    'Dot': 'no exact reference here (hls4ml 1.3.0 builds a Dot of flat vectors only): use Multiply, then a QDense to sum',
}


def _unsupported_layer(layer) -> str:
    cls = type(layer).__name__
    fix = UNSUPPORTED_FIX.get(cls, 'replace it by one of them or remove it')
    return f"layer '{layer.name}' ({cls}): not supported; supported layers are {sorted(EXPORTERS)}; {fix}"


def check_deployable(model) -> None:
    """Refuse, with every reason at once, a model whose structure this flow cannot deploy (the
    quantizers and types are checked by ``to_integer_model``)."""
    problems = []
    for layer in model.layers:
        if not C_IDENTIFIER.match(layer.name) or layer.name in CPP_KEYWORDS:
            fixed = re.sub(r'\W', '_', layer.name)
            fixed = fixed if C_IDENTIFIER.match(fixed) and fixed not in CPP_KEYWORDS else f'l_{fixed}'
            problems.append(f"layer name '{layer.name}' is not a C++ identifier (hls4ml generates C++ from layer names); "
                            f"rename it, e.g. to '{fixed}'")
    for layer in _compute_layers(model):
        cls = type(layer).__name__
        if cls not in EXPORTERS:
            problems.append(_unsupported_layer(layer))
            continue
        try:
            specs = [activation_spec(layer)] if EXPORTERS[cls] is export_activation else []
            specs += [s for s in [fused_activation(layer)] if s]
            for spec in specs:
                _activation_exporter(spec)
        except UnsupportedModel as e:
            problems.append(str(e))
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        problems.append('the model must have one input and one output (layers may branch and merge in between)')
    if problems:
        sep = '\n  ' if len(problems) > 1 else ' '
        raise UnsupportedModel('model cannot be deployed:' + sep + sep.join(problems))


def export_steps(model) -> list[tuple[str, object, tuple[str, ...], str]]:
    """(hls4ml node name, exporter(in_type, overrides), the Keras layers it reads, the Keras layer whose
    output it gives) for every node hls4ml builds, in topological order: one per layer, plus the
    activation it splits off a layer with ``activation=`` (which reads and then gives that layer's output)."""
    steps, inbound = [], keras_inbound(model)
    for layer in _compute_layers(model):
        steps.append((layer.name, functools.partial(EXPORTERS[type(layer).__name__], layer), inbound[layer.name], layer.name))
        spec = fused_activation(layer)
        if spec:
            steps.append((spec.name, functools.partial(export_activation_spec, spec), (layer.name,), layer.name))
    return steps


OUTPUTS = ('model', 'logits')


def deployed_model(model, output: str = 'model', im: IntegerModel | None = None):
    """The model as deployed: ``output='logits'`` strips a final softmax (argmax unchanged). Given the
    reference ``im``, every layer whose class has a deploy rewrite (``registry.deploy_rewrite``) is
    replaced by the layer the rewrite makes from it and its reference layer (a QDense exported
    block-sparse becomes a BlockSparseQDense), so hls4ml builds what the reference computes."""
    if output not in OUTPUTS:
        raise UnsupportedModel(f'output {output!r} unknown; one of {OUTPUTS}')
    if output == 'logits':
        last = _compute_layers(model)[-1]
        if not is_softmax(last):
            raise UnsupportedModel(f"output: logits strips a final softmax, but the last layer '{last.name}' "
                                   f'({type(last).__name__}) is not one; use output: model')
        import tensorflow as tf

        model = tf.keras.Model(model.inputs, last.input, name=model.name)
    return _rewritten(model, im) if im is not None else model


def _rewritten(model, im: IntegerModel):
    """``model`` with the deploy rewrites applied; the model itself when none applies."""
    ref = {layer.name: layer for layer in im.layers}
    rewrites = {}
    for layer in _compute_layers(model):
        rewrite = DEPLOY_REWRITES.get(type(layer).__name__)
        out = rewrite(layer, ref[layer.name]) if rewrite and layer.name in ref else None
        if out is not None:
            rewrites[layer.name] = out
    if not rewrites:
        return model
    import tensorflow as tf

    inp = tf.keras.Input(tuple(model.inputs[0].shape[1:]), name=input_layer_name(model))
    out = rebuild(model, lambda layer, x: (rewrites[layer.name][0] if layer.name in rewrites else layer)(x), inp, inp)
    for _, load in rewrites.values():  # built now
        load()
    return out


def removed_nodes(model, im: IntegerModel, output: str = 'model') -> dict[str, FixedType]:
    """The nodes hls4ml builds that the reference has no layer for (Dropout, a cast to the same type,
    '<layer>_linear', a BatchNormalization that does nothing), with the type flowing there: the
    conversion gives each that result type, so hls4ml removes them (EliminateLinearActivation
    needs equal types in and out; the others are removed whatever their type)."""
    types = {layer.name: layer.out_type for layer in im.layers}
    steps = export_steps(deployed_model(model, output))
    names = {step[0] for step in steps}
    node = {im.input.name: im.input.name}  # Keras layer -> the reference layer holding its output
    removed = {}
    for name, _, reads, gives in steps:
        src = node[reads[0]]
        # a layer hls4ml splits into nodes '<name>_<part>' (a separable convolution): its last part holds its output
        parts = [n for n in types if n.startswith(name + '_') and n not in names]
        if name in types or parts:
            node[gives] = name if name in types else parts[-1]
        else:
            removed[name], node[gives] = types[src], src
    return removed


def to_integer_model(model, input_type: FixedType, overrides: dict[str, Overrides] | None = None,
                     output: str = 'model', sparse: bool = True, default_precision: str = 'ap_fixed<16,6>') -> IntegerModel:
    """``sparse``: the model-wide setting for layers without overrides of their own (zero blocks found
    in dense kernels deploy block-sparse: ``flow/export/found.py``); ``default_precision``: the weights,
    biases and results of unquantized layers (``flow/export/float_layers.py``)."""
    check_deployable(model)
    full = model
    model = deployed_model(model, output)
    overrides = overrides or {}
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    layers = [Input(name=input_layer_name(model), out_type=input_type, shape=shape)]
    node = {layers[0].name: layers[0].name}  # Keras layer -> the reference layer holding its output
    types, shapes = {layers[0].name: input_type}, {layers[0].name: shape}
    for name, export, reads, gives in export_steps(model):
        ov = overrides.get(name, Overrides(sparse=sparse, default=default_precision))
        src = tuple(node[r] for r in reads)
        if len(set(src)) < len(src):
            raise UnsupportedModel(f"layer '{name}' reads the same tensor {len(src)} times; hls4ml's streams feed each "
                                   'input from another tensor: apply the operation to one input instead')
        one = len(src) == 1
        t = types[src[0]] if one else tuple(types[s] for s in src)
        shape = shapes[src[0]] if one else tuple(shapes[s] for s in src)
        try:
            out = export(t, ov)
            refs = out if isinstance(out, list) else [out]  # [] for a node hls4ml removes
            for ref in refs:
                _check_rank(ref, shape)
                ref.check(t)
        except UnsupportedModel:
            raise
        except ValueError as e:  # a quantizer or type the hardware cannot reproduce exactly
            raise UnsupportedModel(str(e)) from e
        for ref in refs:
            split = overrides.get(ref.name) if ref.name != name else None  # a node hls4ml splits this layer into
            if split and (split.accum or split.result or split.table_size or split.table_t or split.block_shape):
                raise UnsupportedModel(f"layer '{ref.name}': hls4ml builds it as a part of layer '{name}', whose parts "
                                       'take their exact types; remove its precision settings (reuse_factor is taken)')
            if (ov.table_size or ov.table_t) and not isinstance(ref, TABLE_LAYERS):
                raise UnsupportedModel(f"layer '{ref.name}': table_size/table_t apply to sigmoid, tanh and softmax "
                                       f'lookup tables; this layer ({ref.kind}) has none')
            before = next((layer for layer in reversed(layers) if layer.name == src[0]), None) if one else None
            if before is not None and before.kind in ref.hls_merged_after:
                raise UnsupportedModel(f"layer '{ref.name}' after '{before.name}' ({before.kind}): "
                                       f'{ref.hls_merged_after[before.kind]}')
            if (ov.weight or ov.bias) and ref.float_weights is None:
                raise UnsupportedModel(f"layer '{ref.name}': weight/bias precision applies to unquantized Keras layers "
                                       f'(Dense, Conv2D); this layer ({ref.kind}) takes its types from its quantizers: '
                                       'remove weight/bias for it')
            if ov.block_shape and getattr(ref, 'found', None) is None:
                raise UnsupportedModel(f"layer '{ref.name}': block_shape applies to dense layers whose zero blocks are "
                                       f'looked for (QDense with quantized_bits kernels); this layer ({ref.kind}) is not '
                                       'one: remove block_shape for it')
            if src != (layers[-1].name,):  # not a chain here: name what it reads
                ref.inputs = src
            layers.append(ref)
            zeros = _zeros(shape) if one else tuple(_zeros(s) for s in shape)
            shape = tuple(ref.forward(zeros, t).shape[1:])  # its output per sample
            t, src, one = ref.out_type, (ref.name,), True
            types[ref.name], shapes[ref.name] = t, shape
        node[gives] = src[0]
    shape = shapes[layers[-1].name]
    unknown = set(overrides) - {layer.name for layer in layers}
    if unknown:
        stripped = unknown & {layer.name for layer in full.layers} - {layer.name for layer in model.layers}
        hint = f' ({sorted(stripped)} removed by output: {output})' if stripped else ''
        removed = unknown & {layer.name for layer in model.layers}
        hint += f' ({sorted(removed)} removed by hls4ml: no-ops)' if removed else ''
        raise UnsupportedModel(f'per-layer settings name layers the model does not have: {sorted(unknown)}{hint}; '
                               f'its layers: {[layer.name for layer in layers]}')
    if len(shape) != 1:
        raise UnsupportedModel(f'the output is a {shape} tensor; the accelerator streams flat vectors: add a Flatten')
    _check_streamable(layers[0], layers[-1])
    return IntegerModel(layers)


def _zeros(shape) -> np.ndarray:
    return np.zeros((1, *shape), dtype=np.int64)


RANK_FIX = {1: 'it acts on flat vectors: put a Flatten before it', 2: 'it takes a (time steps, features) sequence: '
            'remove the Flatten before it', 3: 'it takes (height, width, channels) images: give the model an image '
            'input, e.g. Input((28, 28, 1)), and no Flatten before it'}


def _check_rank(ref, shape: tuple) -> None:
    """Refuse a layer the tensor reaching it does not fit (each reference kind says what it takes)."""
    if ref.elementwise or ref.input_rank is None or len(shape) == ref.input_rank:
        return
    raise UnsupportedModel(f"layer '{ref.name}' ({ref.kind}) gets a {shape} tensor; {RANK_FIX[ref.input_rank]}")


def _check_streamable(first, last) -> None:
    if first.out_type.width > STREAM_MAX_BITS:
        raise UnsupportedModel(f'input precision {first.out_type.hls()} is wider than the {STREAM_MAX_BITS}-bit codes the '
                               'accelerator stream carries; choose a narrower input_precision')
    if last.out_type.width > STREAM_MAX_BITS:
        fix = FixedType(STREAM_MAX_BITS, min(last.out_type.integer, STREAM_MAX_BITS), True, 'RND_CONV', 'SAT')  # same range
        raise UnsupportedModel(
            f"layer '{last.name}' (the output): its result type {last.out_type.hls()} is wider than the {STREAM_MAX_BITS}-bit "
            f'codes the accelerator stream carries; give it a narrower result in the config, e.g. '
            f'layers: {{{last.name}: {{result: "{fix.hls()}"}}}}'
        )


def reference_for(model, cfg) -> IntegerModel:
    """The integer reference of ``model`` under the flow config: the deployability check of every
    layer, quantizer and type (``flow.plan.make_plan`` then checks how each layer is built)."""
    return to_integer_model(model, FixedType.parse(cfg.input_precision), layer_overrides(cfg), cfg.output, cfg.sparse,
                            cfg.default_precision)
