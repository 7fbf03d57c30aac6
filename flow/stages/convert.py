"""hls4ml conversion with every precision set explicitly from the integer reference.

We never rely on hls4ml's 'auto' precision: its inference does not know our layers
(STACK_NOTES), so the reference decides each type and the converted graph is checked against it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from flow.config import FlowConfig
from flow.hls.errors import ConversionMismatch
from flow.infra import processes
from flow.infra.processes import CompileError, compiler_errors
from flow.plan import Plan, make_plan
from flow.runtime.fixed import FixedType
from flow.runtime.ref_layers import DA
from flow.runtime.reference import IntegerModel


def hls_config(im: IntegerModel, plan: Plan, removed: dict[str, FixedType] | None = None) -> dict:
    """Every type explicit, every ReuseFactor and strategy the plan's. ``removed``: nodes hls4ml
    builds and removes again (export.removed_nodes), given the type flowing there so that its
    EliminateLinearActivation sees no cast."""
    layers = {name: {'Precision': {'result': t.hls()}} for name, t in (removed or {}).items()}
    for layer in im.layers:
        lc = {'Trace': True, 'Precision': {'result': layer.out_type.hls()}}
        p = plan[layer.name]
        for var, w in layer.hls_weights(p.reuse_factor or 1).items():
            if w.type is not None:
                lc['Precision'][var] = w.type.hls()
        if p.reuse_factor is not None:
            lc['Precision']['accum'] = layer.accum_type.hls()
            lc['ReuseFactor'] = p.reuse_factor
            if p.strategy is not None:
                lc['Strategy'] = DA if p.da else p.strategy.capitalize()
        for attr, value in layer.hls_attrs().items():
            if attr == 'accum_t':  # read when the layer is created: a plain attribute would override it
                lc['Precision']['accum'] = value.hls()
            else:
                lc[attr] = value.hls() if isinstance(value, FixedType) else value
        layers[layer.name] = lc
    return {
        'Model': {'Precision': 'ap_fixed<16,6>', 'ReuseFactor': plan.default_reuse_factor, 'Strategy': 'Latency',
                  'PipelineStyle': plan.pipeline_style},
        'LayerName': layers,
    }


def _activation_checks(name, node, layer) -> list:
    """The activation function, table parameters and hard-activation constants hls4ml chose
    must be the reference's; returns the (what, hls4ml precision, reference type) to compare."""
    from flow.export.tables import exact_code

    act = str(node.get_attr('activation', '')).lower()
    if act != layer.hls_activation:
        raise ConversionMismatch(f"layer '{name}': hls4ml implements it as {act!r} ({node.class_name}), "
                                 f'the reference as {layer.hls_activation!r}')
    checks = []
    for what, (code, t) in layer.hls_constants().items():
        checks.append((f'{what}_t', node.get_attr(f'{what}_t').precision, t))
        if exact_code(float(node.get_attr(what)), t) != code:
            raise ConversionMismatch(f"layer '{name}': hls4ml's {what} {node.get_attr(what)} is not the reference's "
                                     f'code {code} of {t.hls()}')
    return checks


def _attr_checks(name, node, layer) -> list:
    """The attributes set from the reference (``hls_attrs``) as hls4ml kept them: types returned for
    comparison, other values compared here."""
    checks = []
    for attr, want in layer.hls_attrs().items():
        got = node.get_attr(attr)
        if isinstance(want, FixedType):
            checks.append((attr, got.precision, want))
        elif str(got) != str(want):
            raise ConversionMismatch(f"layer '{name}': hls4ml has {attr}={got!r}, the reference needs {want!r}")
    return checks


def _fixed_of(precision) -> FixedType:
    text = str(precision)  # e.g. fixed<13,6,TRN,WRAP,0>, ufixed<6,2,RND_CONV,SAT,0>, uint<3>
    if text.startswith(('int<', 'uint<')):
        w = int(text[text.index('<') + 1 : -1])
        return FixedType(w, w, signed=not text.startswith('u'))
    return FixedType.parse(text)


def _weight_checks(name, node, layer, rf) -> list:
    """Each weight's values as hls4ml will write them must be the reference's codes; returns the
    (what, hls4ml precision, reference type) of its fixed-point weights to compare."""
    import numpy as np
    from hls4ml.model.types import ExponentPrecisionType

    checks = []
    for weight, want in layer.hls_weights(rf).items():
        var = node.get_weights(weight)
        if want.exponent_bits is not None:
            p = var.type.precision
            if not isinstance(p, ExponentPrecisionType) or p.width != want.exponent_bits:
                raise ConversionMismatch(f"layer '{name}': hls4ml stores {weight} as {p} ({type(p).__name__}), the reference "
                                         f'needs {want.exponent_bits}-bit exponents')
        elif want.type is not None:
            if want.type.frac < 0 and _fixed_of(var.type.precision) != want.type:
                # hls4ml 1.3.0 types quantized_bits(bits, integer >= bits) as int<bits>, losing its step of
                # 2^(integer + 1 - bits): the variable gets the reference's type (its values are checked below)
                from hls4ml.backends.fpga.fpga_types import APTypeConverter
                from hls4ml.model.types import FixedPrecisionType

                t = want.type
                var.update_precision(APTypeConverter().convert(FixedPrecisionType(t.width, t.integer, signed=t.signed)))
            checks.append((weight, var.type.precision, want.type))
        grid = want.type if want.exponent_bits is None else layer.weight_type  # None: integers
        frac = 0 if grid is None else grid.frac
        data = np.asarray(var.data, dtype=np.float64)
        if weight == 'weight' and node.get_attr('_weights_transposed', False):  # Resource: (n_out, n_in) / (F, kh, kw, C)
            data = np.moveaxis(data, 0, -1)
        got = np.ravel(data) * 2.0**frac
        codes = np.ravel(want.codes)
        bad = np.flatnonzero(got != codes) if got.shape == codes.shape else [0]
        if len(bad):
            i = int(bad[0])
            raise ConversionMismatch(
                f"layer '{name}': hls4ml's {weight} values are not the reference's ({got.size} vs {codes.size} values; first "
                f'difference at {i}: {got[i] * 2.0**-frac if i < got.size else None} vs '
                f'{(codes[i] if grid is None else grid.to_float(codes[i])) if i < codes.size else None})'
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
    """Nodes hls4ml adds that pass a tensor on unchanged, with the type they must have: what the
    reference computes inside a layer (``RefLayer.hls_inserted``) and, in io_stream, the
    ``clone_<layer>`` copying a stream that several layers read (hls4ml's CloneOutput)."""
    inserted, in_types = {}, im.in_types()
    for layer in im.layers:
        inserted.update(layer.hls_inserted(in_types[layer.name], io_type))
    readers = Counter(s for src in im.sources().values() for s in src)
    if io_type == 'io_stream':
        inserted.update({f'clone_{layer.name}': layer.out_type for layer in im.layers if readers[layer.name] > 1})
    return inserted


def check_against_reference(hls_model, im: IntegerModel, plan: Plan) -> None:
    """Every node of the converted graph is a reference layer with the plan's ReuseFactor and the same types."""
    io_type = hls_model.config.get_config_value('IOType')
    ref = {layer.hls_node(io_type): layer for layer in im.layers}  # by the node that builds each
    nodes = dict(hls_model.graph)
    inserted = inserted_nodes(im, io_type)
    extra = [n for n in nodes if n not in ref and n not in inserted]
    final = im.layers[-1]  # hls4ml may drop it (a final Flatten: RemoveFinalReshape)
    missing = [n for n in ref if n not in nodes and not (ref[n] is final and final.hls_dropped_when_last)]
    missing += [n for n in inserted if n not in nodes]
    if extra or missing:
        raise ConversionMismatch(f'hls4ml graph differs from the reference: extra nodes {extra}, missing {missing}')
    for name, want in inserted.items():
        got = nodes.pop(name).get_output_variable().type.precision
        if _fixed_of(got) != want:
            raise ConversionMismatch(f"node '{name}' (inserted by hls4ml): type {got}, the input's is {want.hls()}")
    for name, node in nodes.items():
        layer = ref[name]
        p = plan[layer.name]
        if p.reuse_factor is not None and node.get_attr('reuse_factor') != p.reuse_factor:
            backend = node.model.config.backend
            n_in, n_out = backend.get_layer_mult_size(node)[:2] if node.get_attr('n_in') is None else \
                (node.get_attr('n_in'), node.get_attr('n_out'))
            raise ConversionMismatch(
                f"layer '{name}': hls4ml changed ReuseFactor {p.reuse_factor} to {node.get_attr('reuse_factor')}; "
                f'valid values for hls4ml {node.class_name} ({n_in}x{n_out} products): {backend.get_valid_reuse_factors(n_in, n_out)}'
            )
        checks = [('result', node.get_output_variable().type.precision, layer.out_type)]
        checks += _da_checks(name, node, layer) if p.da else _weight_checks(name, node, layer, p.reuse_factor or 1)
        if not p.da and hasattr(node, 'check_reference'):  # our extensions' own checks (generated code)
            node.check_reference(layer)
        if p.reuse_factor is not None:
            checks.append(('accum', node.get_attr('accum_t').precision, layer.accum_type))
        if layer.hls_activation is not None:
            checks += _activation_checks(name, node, layer)
        checks += _attr_checks(name, node, layer)
        for what, got, want in checks:
            if _fixed_of(got) != want:
                raise ConversionMismatch(f"layer '{name}': hls4ml chose {what} type {got}, the reference needs {want.hls()}")


def convert_model(keras_model, im: IntegerModel, cfg: FlowConfig, board, output_dir: Path, plan: Plan | None = None):
    """``plan``: the layers' plan (made here when not given)."""
    import hls4ml

    from flow.export import deployed_model, removed_nodes
    from flow.hls import register

    register()
    plan = plan or make_plan(im, cfg, board)
    hls_model = hls4ml.converters.convert_from_keras_model(
        deployed_model(keras_model, cfg.output, im),  # im: deploy rewrites (found sparsity)
        hls_config=hls_config(im, plan, removed_nodes(keras_model, im, cfg.output)),
        output_dir=str(output_dir),
        project_name=cfg.project_name,
        backend='Vitis',
        io_type=plan.io_type,
        part=board.part,
        clock_period=cfg.clock_period_ns or board.clock_period_ns,
    )
    check_against_reference(hls_model, im, plan)
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
