"""hls4ml conversion with every precision set explicitly from the integer reference.

We never rely on hls4ml's 'auto' precision: its inference does not know our layers
(STACK_NOTES), so the reference decides each type and the converted graph is checked against it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from flow import processes
from flow.config import FlowConfig
from flow.runtime.fixed import FixedType
from flow.runtime.reference import IntegerModel

DENSE_KINDS = ('dense', 'block_sparse_dense')


class ConversionMismatch(RuntimeError):
    pass


def hls_config(im: IntegerModel, cfg: FlowConfig) -> dict:
    layers = {}
    for layer in im.layers:
        lc = {'Trace': True, 'Precision': {'result': layer.out_type.hls()}}
        if layer.kind in DENSE_KINDS:
            lc['Precision'].update(
                weight=layer.weight_type.hls(), bias=layer.bias_type.hls(), accum=layer.accum_type.hls()
            )
            lc['ReuseFactor'] = cfg.reuse_for(layer.name)
            if layer.kind == 'dense':
                lc['Strategy'] = cfg.strategy_for(layer.name).capitalize()
            # hls4ml inserts '<name>_linear' after a QDense; same type in and out lets its
            # EliminateLinearActivation pass remove it.
            layers[f'{layer.name}_linear'] = {'Precision': {'result': layer.out_type.hls()}}
        layers[layer.name] = lc
    return {
        'Model': {'Precision': 'ap_fixed<16,6>', 'ReuseFactor': cfg.reuse_factor, 'Strategy': 'Latency'},
        'LayerName': layers,
    }


def _fixed_of(precision) -> FixedType:
    text = str(precision)  # e.g. fixed<13,6,TRN,WRAP,0>, ufixed<6,2,RND_CONV,SAT,0>, uint<3>
    if text.startswith(('int<', 'uint<')):
        w = int(text[text.index('<') + 1 : -1])
        return FixedType(w, w, signed=not text.startswith('u'))
    return FixedType.parse(text)


def check_against_reference(hls_model, im: IntegerModel, cfg: FlowConfig) -> None:
    """Every node of the converted graph is a reference layer with the same types."""
    ref = {layer.name: layer for layer in im.layers}
    nodes = dict(hls_model.graph)
    extra = [n for n in nodes if n not in ref]
    missing = [n for n in ref if n not in nodes]
    if extra or missing:
        raise ConversionMismatch(f'hls4ml graph differs from the reference: extra nodes {extra}, missing {missing}')
    for name, node in nodes.items():
        layer = ref[name]
        if layer.kind in DENSE_KINDS and node.get_attr('reuse_factor') != cfg.reuse_for(name):
            valid = node.model.config.backend.get_valid_reuse_factors(node.get_attr('n_in'), node.get_attr('n_out'))
            raise ConversionMismatch(
                f"layer '{name}': hls4ml changed ReuseFactor {cfg.reuse_for(name)} to {node.get_attr('reuse_factor')}; "
                f'valid values for hls4ml Dense {node.get_attr("n_in")}x{node.get_attr("n_out")}: {valid}'
            )
        checks = [('result', node.get_output_variable().type.precision, layer.out_type)]
        if layer.kind in DENSE_KINDS:
            checks += [
                ('weight', node.get_weights('weight').type.precision, layer.weight_type),
                ('bias', node.get_weights('bias').type.precision, layer.bias_type),
                ('accum', node.get_attr('accum_t').precision, layer.accum_type),
            ]
        for what, got, want in checks:
            if _fixed_of(got) != want:
                raise ConversionMismatch(f"layer '{name}': hls4ml chose {what} type {got}, the reference needs {want.hls()}")


def convert_model(keras_model, im: IntegerModel, cfg: FlowConfig, board, output_dir: Path):
    import hls4ml

    from flow.hls import register

    register()
    hls_model = hls4ml.converters.convert_from_keras_model(
        keras_model,
        hls_config=hls_config(im, cfg),
        output_dir=str(output_dir),
        project_name=cfg.project_name,
        backend='Vitis',
        io_type=cfg.io_type,
        part=board.part,
        clock_period=cfg.clock_period_ns or board.clock_period_ns,
    )
    check_against_reference(hls_model, im, cfg)
    # Emit the per-layer trace hooks in the C simulation (inert in synthesis), so a mismatch
    # can be traced to its first layer without recompiling.
    hls_model.config.trace_output = True
    hls_model.write()
    return hls_model


class CompileError(RuntimeError):
    pass


def compiler_errors(res: subprocess.CompletedProcess, what: str) -> CompileError:
    """The error raised for a failed g++ run: its error lines, or its last lines if none say 'error'."""
    out = (res.stderr + res.stdout).splitlines()
    lines = [l for l in out if 'error' in l.lower()][:15] or out[-15:]
    return CompileError(f'{what} did not compile (g++ exit {res.returncode}):\n' + '\n'.join(lines))


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
