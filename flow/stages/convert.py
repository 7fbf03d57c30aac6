"""hls4ml conversion with every precision set explicitly from the integer reference.

We never rely on hls4ml's 'auto' precision: its inference does not know our layers
(STACK_NOTES), so the reference decides each type and the converted graph is checked against it.
"""

from __future__ import annotations


from pathlib import Path

from flow.infra import processes
from flow.infra.processes import CompileError, compiler_errors
from flow.config import FlowConfig

from flow.runtime.fixed import FixedType
from flow.runtime.ref_conv import Convolution
from flow.plan import DA, DENSE_KINDS, HLS4ML_DENSE, check_strategies, resolve_io_type, uses_da
from flow.runtime.reference import IntegerModel
from flow.runtime.schedule import gather


def _sst_codes(layer, rf):
    """The SST template's codeword ROM: n_dec * rf words, padded with codeword 0 (no non-zero)."""
    import numpy as np

    codes = np.ravel(layer.codes)
    return np.concatenate([codes, np.zeros(-len(codes) % rf, dtype=codes.dtype)])


def _gather(table: str):
    """The block-sparse template stores the gather schedule of the reference's packed weights."""
    return lambda layer, rf: getattr(gather(layer, rf), table)


# hls4ml weight variable -> (reference codes field, reference type field), per layer kind: the
# types are set in the config and checked after conversion, and the values hls4ml will write are
# compared with the reference's codes. A callable field gives the codes from (layer, ReuseFactor);
# no type field: integer tables (hls4ml sizes their types), compared as they are.
WEIGHTS = {
    'dense': {'weight': ('weight', 'weight_type'), 'bias': ('bias', 'bias_type')},
    'dense_po2': {'weight': ('weight', 'weight_type'), 'bias': ('bias', 'bias_type')},
    'block_sparse_dense': {'weight': (_gather('weights'), 'weight_type'), 'bias': ('bias', 'bias_type')},
    'batchnorm': {'scale': ('scale', 'weight_type'), 'bias': ('bias', 'bias_type')},
    'conv2d': {'weight': ('weight', 'weight_type'), 'bias': ('bias', 'bias_type')},  # (kh, kw, C, F) = (kh * kw * C, F)
    'sst_dense': {'code': (_sst_codes, None), 'pattern': (lambda layer, rf: layer.code.decoder_rom(), None),
                  'scale': ('scale', 'scale_type'), 'bias': ('bias', 'bias_type')},
    # the reference's packed arrays as they are: (4, kept, bi, bo) per kernel, one index per kept block
    'block_sparse_lstm': {'weight': ('values', 'weight_type'), 'recurrent_weight': ('recurrent_values', 'recurrent_type'),
                          'bias': ('bias', 'bias_type'), 'weight_index': ('index', None),
                          'recurrent_index': ('recurrent_index', None)},
}
WEIGHTS['block_sparse_conv2d'] = WEIGHTS['block_sparse_dense']  # the same kernel, per patch
# Weights hls4ml stores as a sign and an exponent (ExponentPrecisionType, taken from the QKeras
# quantizer, not from the config): the reference field giving the exponent's width.
EXPONENT_WEIGHTS = {'dense_po2': {'weight': 'exponent_bits'}}
# Every table parameter of an activation (and SST's sum type), set explicitly from the reference and
# checked after conversion: hls4ml layer attribute -> reference field (or a fixed value).
TABLE_ATTRS = {
    'sigmoid': {'table_size': 'table_size', 'table_t': 'table_type'},
    'tanh': {'table_size': 'table_size', 'table_t': 'table_type'},
    'sst_dense': {'sum_t': 'sum_type'},  # the type of the +-input sums
    'maxpool2d': {'accum_t': 'out_type'},  # hls4ml compares the window in accum_t: the input's type
    'block_sparse_lstm': {'gate_t': 'gate_type', 'act_t': 'act_type', 'cell_sum_t': 'cell_sum_type',
                          'cell_t': 'cell_type', 'hidden_product_t': 'hidden_product_type'},  # per-step types
    'softmax': {'implementation': 'implementation', 'exp_table_size': 'exp_table_size', 'inv_table_size': 'inv_table_size',
                'exp_table_t': 'exp_table_type', 'inv_table_t': 'inv_table_type', 'accum_t': 'accum_type',
                'inv_inp_t': 'inv_inp_type', 'inp_norm_t': 'inp_norm_type'},
}
# 'activation': hls4ml names a Keras Softmax layer's config struct 'Softmax_config<i>' but calls
# 'softmax_config<i>' (1.3.0; the C simulation does not compile): the lower-case name fixes both.
FIXED_ATTRS = {'softmax': {'activation': 'softmax', 'exp_scale': 1.0, 'skip': False}}
HARD_KINDS = ('hard_sigmoid', 'hard_tanh')  # slope/shift come from hls4ml's parser; checked only
ACTIVATION_KINDS = ('relu', 'linear', 'sigmoid', 'tanh', 'softmax', *HARD_KINDS)


class ConversionMismatch(RuntimeError):
    pass


def hls_config(im: IntegerModel, cfg: FlowConfig, removed: dict[str, FixedType] | None = None) -> dict:
    """Every type explicit. ``removed``: nodes hls4ml builds and removes again (export.removed_nodes),
    given the type flowing there so that its EliminateLinearActivation sees no cast."""
    layers = {name: {'Precision': {'result': t.hls()}} for name, t in (removed or {}).items()}
    for layer in im.layers:
        lc = {'Trace': True, 'Precision': {'result': layer.out_type.hls()}}
        exponents = EXPONENT_WEIGHTS.get(layer.kind, {})
        for weight, (_, type_field) in WEIGHTS.get(layer.kind, {}).items():
            if weight not in exponents and type_field is not None:
                lc['Precision'][weight] = getattr(layer, type_field).hls()
        if layer.kind in DENSE_KINDS:
            lc['Precision']['accum'] = layer.accum_type.hls()
            lc['ReuseFactor'] = cfg.reuse_for(layer.name)
            if uses_da(layer, cfg):
                lc['Strategy'] = DA
            elif layer.kind in HLS4ML_DENSE:
                lc['Strategy'] = cfg.strategy_for(layer.name).capitalize()
        for attr, value in _table_attrs(layer).items():
            if attr == 'accum_t':  # read when the layer is created: a plain attribute would override it
                lc['Precision']['accum'] = value.hls()
            else:
                lc[attr] = value.hls() if isinstance(value, FixedType) else value
        layers[layer.name] = lc
    return {
        'Model': {'Precision': 'ap_fixed<16,6>', 'ReuseFactor': cfg.reuse_factor, 'Strategy': 'Latency'},
        'LayerName': layers,
    }


def _table_attrs(layer) -> dict:
    attrs = {attr: getattr(layer, f) for attr, f in TABLE_ATTRS.get(layer.kind, {}).items()}
    return {**attrs, **FIXED_ATTRS.get(layer.kind, {})}


def _activation_checks(name, node, layer) -> list:
    """The activation function, table parameters and hard-activation constants hls4ml chose
    must be the reference's; returns the (what, hls4ml precision, reference type) to compare."""
    from flow.export.tables import exact_code

    act = str(node.get_attr('activation', '')).lower()
    if act != layer.kind:
        raise ConversionMismatch(f"layer '{name}': hls4ml implements it as {act!r} ({node.class_name}), "
                                 f'the reference as {layer.kind!r}')
    checks = []
    for attr, want in _table_attrs(layer).items():
        got = node.get_attr(attr)
        if isinstance(want, FixedType):
            checks.append((attr, got.precision, want))
        elif str(got) != str(want):
            raise ConversionMismatch(f"layer '{name}': hls4ml has {attr}={got!r}, the reference needs {want!r}")
    if layer.kind in HARD_KINDS:
        for what in ('slope', 'shift'):
            t = getattr(layer, f'{what}_type')
            checks.append((f'{what}_t', node.get_attr(f'{what}_t').precision, t))
            if exact_code(float(node.get_attr(what)), t) != getattr(layer, what):
                raise ConversionMismatch(f"layer '{name}': hls4ml's {what} {node.get_attr(what)} is not the reference's "
                                         f'code {getattr(layer, what)} of {t.hls()}')
    return checks


def _fixed_of(precision) -> FixedType:
    text = str(precision)  # e.g. fixed<13,6,TRN,WRAP,0>, ufixed<6,2,RND_CONV,SAT,0>, uint<3>
    if text.startswith(('int<', 'uint<')):
        w = int(text[text.index('<') + 1 : -1])
        return FixedType(w, w, signed=not text.startswith('u'))
    return FixedType.parse(text)


def _weight_checks(name, node, layer) -> list:
    """Each weight's values as hls4ml will write them must be the reference's codes; returns the
    (what, hls4ml precision, reference type) of its fixed-point weights to compare."""
    import numpy as np
    from hls4ml.model.types import ExponentPrecisionType

    checks = []
    exponents = EXPONENT_WEIGHTS.get(layer.kind, {})
    for weight, (codes_field, type_field) in WEIGHTS.get(layer.kind, {}).items():
        var = node.get_weights(weight)
        grid = getattr(layer, type_field) if type_field else None  # None: integers
        if weight in exponents:
            p, bits = var.type.precision, getattr(layer, exponents[weight])
            if not isinstance(p, ExponentPrecisionType) or p.width != bits:
                raise ConversionMismatch(f"layer '{name}': hls4ml stores {weight} as {p} ({type(p).__name__}), the reference "
                                         f'needs {bits}-bit exponents')
        elif grid is not None:
            checks.append((weight, var.type.precision, grid))
        frac = 0 if grid is None else grid.frac
        data = np.asarray(var.data, dtype=np.float64)
        if weight == 'weight' and node.get_attr('_weights_transposed', False):  # Resource: (n_out, n_in) / (F, kh, kw, C)
            data = np.moveaxis(data, 0, -1)
        got = np.ravel(data) * 2.0**frac
        want = np.ravel(codes_field(layer, node.get_attr('reuse_factor')) if callable(codes_field) else getattr(layer, codes_field))
        bad = np.flatnonzero(got != want) if got.shape == want.shape else [0]
        if len(bad):
            i = int(bad[0])
            raise ConversionMismatch(
                f"layer '{name}': hls4ml's {weight} values are not the reference's ({got.size} vs {want.size} values; first "
                f'difference at {i}: {got[i] * 2.0**-frac if i < got.size else None} vs '
                f'{(want[i] if grid is None else grid.to_float(want[i])) if i < want.size else None})'
            )
    return checks


def _da_checks(name, node, layer) -> list:
    """A distributed_arithmetic layer is hls4ml's Dense with its DA code, built from the reference's
    weights (zeros included). The weights have no types there (da4ml uses the constants exactly)."""
    import numpy as np

    if node.class_name != 'Dense' or node.get_attr('strategy') != DA or 'da_codegen' not in node.attributes:
        raise ConversionMismatch(f"layer '{name}': hls4ml built it as {node.class_name} with strategy "
                                 f"{node.get_attr('strategy')!r}, not as a Dense with {DA} code")
    for what, got, want, t in (('weight', node.get_attr('da_weight'), layer.dense_weight(), layer.weight_type),
                               ('bias', node.get_attr('da_bias'), layer.bias, layer.bias_type)):
        got = np.ravel(np.asarray(got, dtype=np.float64)) * 2.0**t.frac
        want = np.ravel(want)
        bad = np.flatnonzero(got != want) if got.shape == want.shape else [0]
        if len(bad):
            raise ConversionMismatch(f"layer '{name}': the {what} values hls4ml's {DA} code was built from are not the "
                                     f'reference\'s ({got.size} vs {want.size} values; first difference at {int(bad[0])})')
    return []


def inserted_nodes(im: IntegerModel, io_type: str) -> dict[str, FixedType]:
    """Nodes hls4ml adds that the reference computes inside a layer, with the type they must pass on
    unchanged: in io_stream, a ZeroPadding2D ('zp2d_<conv>') before every padded convolution."""
    if io_type != 'io_stream':
        return {}
    inserted, t = {}, im.in_type
    for layer in im.layers:
        if isinstance(layer, Convolution) and any(layer.pads):
            inserted[f'zp2d_{layer.name}'] = t
        t = layer.out_type
    return inserted


def check_against_reference(hls_model, im: IntegerModel, cfg: FlowConfig) -> None:
    """Every node of the converted graph is a reference layer with the same types."""
    ref = {layer.name: layer for layer in im.layers}
    nodes = dict(hls_model.graph)
    inserted = inserted_nodes(im, hls_model.config.get_config_value('IOType'))
    extra = [n for n in nodes if n not in ref and n not in inserted]
    # hls4ml's RemoveFinalReshape drops a final Flatten (e.g. after an LSTM's every h): in io_parallel
    # the output array is the same, uncast
    final = im.layers[-1]
    missing = [n for n in ref if n not in nodes and not (ref[n] is final and final.kind == 'flatten')]
    missing += [n for n in inserted if n not in nodes]
    if extra or missing:
        raise ConversionMismatch(f'hls4ml graph differs from the reference: extra nodes {extra}, missing {missing}')
    for name, want in inserted.items():
        got = nodes.pop(name).get_output_variable().type.precision
        if _fixed_of(got) != want:
            raise ConversionMismatch(f"node '{name}' (hls4ml's zero padding): type {got}, the input's is {want.hls()}")
    for name, node in nodes.items():
        layer = ref[name]
        if layer.kind in DENSE_KINDS and node.get_attr('reuse_factor') != cfg.reuse_for(name):
            backend = node.model.config.backend
            n_in, n_out = backend.get_layer_mult_size(node)[:2] if node.get_attr('n_in') is None else \
                (node.get_attr('n_in'), node.get_attr('n_out'))
            raise ConversionMismatch(
                f"layer '{name}': hls4ml changed ReuseFactor {cfg.reuse_for(name)} to {node.get_attr('reuse_factor')}; "
                f'valid values for hls4ml {node.class_name} ({n_in}x{n_out} products): {backend.get_valid_reuse_factors(n_in, n_out)}'
            )
        checks = [('result', node.get_output_variable().type.precision, layer.out_type)]
        checks += _da_checks(name, node, layer) if uses_da(layer, cfg) else _weight_checks(name, node, layer)
        if layer.kind in ('block_sparse_dense', 'block_sparse_conv2d') and not uses_da(layer, cfg):
            from flow.hls.block_sparse_emit import check_generated_code

            check_generated_code(name, node, layer)  # the kernel C++ is gather(reference)'s
        if layer.kind in DENSE_KINDS:
            checks.append(('accum', node.get_attr('accum_t').precision, layer.accum_type))
        if layer.kind in ACTIVATION_KINDS:
            checks += _activation_checks(name, node, layer)
        else:
            checks += [(a, node.get_attr(a).precision, t) for a, t in _table_attrs(layer).items() if isinstance(t, FixedType)]
        for what, got, want in checks:
            if _fixed_of(got) != want:
                raise ConversionMismatch(f"layer '{name}': hls4ml chose {what} type {got}, the reference needs {want.hls()}")


def convert_model(keras_model, im: IntegerModel, cfg: FlowConfig, board, output_dir: Path, io_type: str | None = None):
    """``io_type``: resolve_io_type's choice (computed here when not given)."""
    import hls4ml

    from flow.export import deployed_model, removed_nodes
    from flow.hls import register

    register()
    check_strategies(im, cfg)
    hls_model = hls4ml.converters.convert_from_keras_model(
        deployed_model(keras_model, cfg.output),
        hls_config=hls_config(im, cfg, removed_nodes(keras_model, im, cfg.output)),
        output_dir=str(output_dir),
        project_name=cfg.project_name,
        backend='Vitis',
        io_type=io_type or resolve_io_type(im, cfg, board),
        part=board.part,
        clock_period=cfg.clock_period_ns or board.clock_period_ns,
    )
    check_against_reference(hls_model, im, cfg)
    # Emit the per-layer trace hooks in the C simulation (inert in synthesis), so a mismatch
    # can be traced to its first layer without recompiling.
    hls_model.config.trace_output = True
    hls_model.write()
    write_da_costs(hls_model, Path(output_dir) / DA_COSTS)
    return hls_model


DA_COSTS = 'da_layers.json'  # in the HLS project: da4ml's cost estimate (LUTs) of each DA layer


def write_da_costs(hls_model, path: Path) -> None:
    """da4ml's own LUT estimate of every distributed_arithmetic layer's adder graph (hls4ml keeps
    it as ``da_kernel_cost``), for resource estimates; nothing when no layer uses DA."""
    import json

    costs = {name: {'lut_estimate': float(node.get_attr('da_kernel_cost'))}
             for name, node in hls_model.graph.items() if node.get_attr('da_kernel_cost') is not None}
    if costs:
        path.write_text(json.dumps(costs, indent=1) + '\n')


def compile_csim(hls_dir: Path) -> Path:
    """Compile the C simulation library with hls4ml's own build_lib.sh; returns the .so path."""
    hls_dir = Path(hls_dir)
    for old in (hls_dir / 'firmware').glob('*.so'):
        old.unlink()
    res = processes.run(['bash', 'build_lib.sh'], cwd=hls_dir, capture_output=True, text=True)
    if res.returncode:
        raise compiler_errors(res, 'C simulation')
    libs = list((hls_dir / 'firmware').glob('*.so'))
    if len(libs) != 1:
        raise CompileError(f'expected one C simulation library in {hls_dir / "firmware"}, found {libs}')
    return libs[0]
