"""The verify step: golden vectors through QKeras, the integer reference and the C simulation.

Reference vs C simulation: exact equality of every output code, for every vector. On a mismatch
the C simulation is traced layer by layer and the first differing layer and element is named.
QKeras vs reference: exact equality of codes on every layer QKeras computes exactly (quantizers
matched, float32 sums exact); the report names the layers that cannot be compared, and why.
"""

from __future__ import annotations

import json

import numpy as np

from flow.data.targets import regression_error
from flow.stages.accel import golden_words, run_testbench
from flow.infra.build_dir import write_json
from flow.infra.progress import console
from flow.runtime.csim import CSimLibrary
from flow.runtime.ref_layers import _Accumulating
from flow.runtime.reference import IntegerModel, Mismatch, describe, first_mismatch  # noqa: F401  (Mismatch: verify's error)
from flow.runtime.stream import StreamFormat

FLOAT32_EXACT_INT = 2**24  # float32 holds every integer of magnitude up to 2^24


def model_data(cfg, im: IntegerModel):
    """(the data checked against the model and on its input grid, or None; notes): flow.data.datasets.for_model
    for the reference's input and output shapes."""
    from flow.data.datasets import for_model

    return for_model(cfg.dataset, cfg.seed, im.in_type, im.input.shape, (im.sizes()[im.layers[-1].name],))


def reference_accuracy(cfg, im: IntegerModel) -> dict:
    """The integer reference's accuracy on the data's whole test split (labelled data only): the
    hardware's, since verify checks the C simulation equal to the reference bit for bit."""
    data, _ = model_data(cfg, im)
    if data is None or data.task != 'classification':
        return {'test_accuracy_reference': None, 'n_test': 0}
    out = im.predict_codes(im.in_type.from_float_exact(data.x_test.astype(np.float64), 'test input'))
    return {'test_accuracy_reference': float(np.mean(out.argmax(1) == data.y_test)), 'n_test': len(data.y_test)}


def golden_set(cfg, im: IntegerModel):
    """(float inputs, input codes, targets or None, task or None, notes): the data's test split on the
    input grid (labels, float targets or none: ``task``), or random codes (extremes first) when there
    is no data."""
    from flow.data.datasets import random_inputs

    data, notes = model_data(cfg, im)
    if data is None:
        codes = random_inputs(im.in_type, im.input.shape, cfg.n_golden, cfg.seed)
        return im.in_type.to_float(codes), codes, None, None, notes
    if cfg.n_golden > len(data.x_test):
        notes.append(f'n_golden {cfg.n_golden} is more than the {len(data.x_test)} test vectors of the data: using all '
                     f'{len(data.x_test)}')
        console.print(f'[yellow]note:[/] {notes[-1]}')
    x = data.x_test[: cfg.n_golden].astype(np.float64)
    y = None if data.y_test is None else data.y_test[: cfg.n_golden]
    return x, im.in_type.from_float_exact(x, 'golden input'), y, data.task, notes


GOLDEN = {None: 'random vectors, no accuracy', 'classification': 'test split of the data',
          'regression': 'test split of the data, float targets: error, no accuracy',
          'inputs only': "the data's inputs (no targets), no accuracy"}


OFF_GRID = np.iinfo(np.int64).min  # never a valid code: an off-grid value always mismatches


def to_codes(values, frac: int) -> np.ndarray:
    """Float values -> integer codes at ``frac`` fractional bits; off-grid values -> OFF_GRID."""
    scaled = np.asarray(values, dtype=np.float64) * 2.0**frac
    codes = np.rint(scaled)
    return np.where(codes == scaled, codes, OFF_GRID).astype(np.int64)


def csim_library(root, im: IntegerModel, project: str) -> CSimLibrary:
    libs = sorted((root / 'hls' / 'firmware').glob('*.so'))
    if len(libs) != 1:
        raise FileNotFoundError(f'no single C simulation library in {root / "hls" / "firmware"}; rerun --from-step csim_compile')
    sizes = list(im.sizes().values())
    return CSimLibrary(libs[0], project, sizes[0], sizes[-1], root / 'hls' / 'firmware' / 'weights')


def qkeras_outputs(model, im: IntegerModel, x) -> dict[str, np.ndarray]:
    """QKeras per-layer float outputs, keyed by the reference's layer names."""
    import tensorflow as tf

    from flow.export import keras_view

    model = keras_view(model)  # fused activations as layers of their own, flat input: the reference's names
    keras = {l.name for l in model.layers}  # not: the nodes hls4ml splits a layer into ('<sep>_depthwise')
    names = [l.name for l in im.layers[1:] if l.name in keras]
    probe = tf.keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outs = probe.predict(x.astype(np.float32).reshape(len(x), *probe.input_shape[1:]), verbose=0)  # the view is flat
    return dict(zip(names, outs if isinstance(outs, list) else [outs]))


def qkeras_comparable(im: IntegerModel) -> tuple[list[str], str]:
    """Layers whose QKeras outputs must equal the reference code for code, and why the rest
    (if any) cannot.

    QKeras computes a dense layer in float32 and does not model the hardware's accumulator or
    result types. Its output is still exact while every partial sum is a float32 integer multiple
    of the sum's LSB: magnitude <= 2^24 LSBs (a 24-bit significand holds every integer up to 2^24,
    2^24 + 1 is the first it rounds), and while the accumulator and the result cast hold every
    reachable sum (an override may wrap, round or saturate where QKeras does not)."""
    names, in_types = [], im.in_types()
    for layer in im.layers[1:]:
        in_t = in_types[layer.name]
        approximated = layer.inexact_in_float()
        if approximated:  # lookup tables, hls4ml's rounded hard_sigmoid slope
            return names, f"from layer '{layer.name}' on: {approximated}"
        if isinstance(layer, _Accumulating):
            bound, frac = layer.sum_bound(in_t)
            stop = None
            if (f32 := layer.float32_bound(in_t)) > FLOAT32_EXACT_INT:
                stop = (f'its sums reach {f32} LSBs, beyond the 2^24 that float32 holds exactly, and QKeras computes '
                        'in float32, so its sums can round')
            elif not layer.accum_type.holds(bound, frac):
                stop = (f'its accumulator {layer.accum_type.hls()} cannot hold every sum of this layer (up to {bound} '
                        f'LSBs of 2^-{frac}): the hardware wraps where QKeras does not')
            elif not layer.out_type.holds(bound, frac):
                stop = (f'its result type {layer.out_type.hls()} rounds or saturates the exact sum, a cast the hardware '
                        'does and QKeras does not model')
            if stop:
                return names, f"from layer '{layer.name}' on: {stop}"
        elif stop := layer.qkeras_inexact(in_t):
            # a layer that bounds its own float32 computation step by step (the LSTM)
            return names, f"from layer '{layer.name}' on: {stop}"
        names.append(layer.name)
    return names, 'every layer is exact in QKeras (quantizers matched, float32 sums exact)'


def deviations_lsb(im: IntegerModel, q: dict[str, np.ndarray], ref_trace, skip) -> dict[str, float]:
    """Largest |QKeras - reference| per layer not compared exactly, in LSBs of the layer's output type."""
    out = {}
    for layer in im.layers[1:]:
        if layer.name not in skip and layer.name in q:
            diff = np.asarray(q[layer.name], dtype=np.float64) * 2.0**layer.out_type.frac - ref_trace[layer.name]
            out[layer.name] = float(np.abs(diff).max()) if diff.size else 0.0
    return out


def _largest(dev: dict[str, float]) -> str:
    if not dev:
        return ''
    name = max(dev, key=dev.get)
    return f', largest deviation {dev[name]:.2f} LSB in {name!r}'


def compare_reference_csim(im: IntegerModel, lib: CSimLibrary, x, x_codes, ref_trace=None) -> np.ndarray:
    """C-simulation output codes, which must equal the reference's exactly; on a mismatch, trace
    the C simulation and raise naming the first differing layer and element."""
    ref_trace = ref_trace if ref_trace is not None else im.trace(x_codes)
    ref_out = list(ref_trace.values())[-1]
    csim_codes = to_codes(lib.run(x), im.out_type.frac)
    if np.array_equal(csim_codes, ref_out):
        return csim_codes
    traced = lib.trace(x, im.sizes())
    by_layer = {l.name: to_codes(traced[l.name], l.out_type.frac) for l in im.layers if l.name in traced}
    m = first_mismatch(ref_trace, by_layer) or first_mismatch({'output': ref_out}, {'output': csim_codes})
    raise Mismatch(describe('reference vs C simulation', m, im))


def verify_build(ctx) -> dict:
    from keras_models.layers import load_model

    cfg, root = ctx.config, ctx.root
    im = ctx.reference()
    x, x_codes, targets, task, notes = golden_set(cfg, im)
    labels = targets if task == 'classification' else None
    ref_trace = im.trace(x_codes)
    ref_out = list(ref_trace.values())[-1]

    lib = csim_library(root, im, cfg.project_name)
    report = {'n_vectors': int(len(x)), 'n_golden_requested': cfg.n_golden, 'input_type': im.in_type.hls(),
              'output_type': im.out_type.hls(), 'output': cfg.output,  # 'logits': the final softmax was not deployed
              'golden': GOLDEN[task], 'task': task, 'notes': notes}

    # 1. reference vs C simulation: exact
    csim_codes = compare_reference_csim(im, lib, x, x_codes, ref_trace)
    report['reference_vs_csim'] = {'equal_vectors': int(len(x)), 'exact': True}

    # 2. QKeras vs reference
    model = load_model(root / 'train' / 'model.h5')
    comparable, why = qkeras_comparable(im)
    q = qkeras_outputs(model, im, x)
    q_codes = {name: to_codes(q[name], im_layer.out_type.frac) for name, im_layer in
               ((l.name, l) for l in im.layers[1:]) if name in comparable and name in q}
    m = first_mismatch(ref_trace, q_codes)
    if m:
        raise Mismatch(describe('QKeras vs reference', m, im) + f' ({why})')
    exact = len(comparable) == len(im.layers) - 1
    q_last = q[im.layers[-1].name].reshape(len(x), -1)
    report['qkeras_vs_reference'] = {
        'exact_layers': comparable,
        'all_layers_exact': exact,
        'reason': why,
        'max_deviation_lsb': deviations_lsb(im, q, ref_trace, comparable),
        # float software past the first unmodelled cast: only the decisions are compared
        'argmax_agreement': None if task == 'regression' else float(np.mean(q_last.argmax(1) == ref_out.argmax(1))),
    }

    report['accuracy'] = None if labels is None else {
        'reference': float(np.mean(ref_out.argmax(1) == labels)), 'csim': float(np.mean(csim_codes.argmax(1) == labels))}
    hw = im.out_type.to_float(csim_codes)  # the hardware's outputs (== the reference's, checked above)
    # regression: the hardware against the targets and against the float model (float software: an error, not exactness)
    report['error'] = None if task != 'regression' else {
        'hardware_vs_targets': regression_error(hw, targets), 'float_model_vs_targets': regression_error(q_last, targets),
        'hardware_vs_float_model': regression_error(hw, q_last)}

    golden = ctx.stage / 'golden'
    # 3. the AXI-Stream accelerator top (stream packing, TLAST) in its own C testbench
    fmt = StreamFormat.from_dict(json.loads((root / 'hls' / 'stream_format.json').read_text()))
    x, x_codes = x.reshape(len(x), -1), x_codes.reshape(len(x_codes), -1)  # the stream (and board) take flat samples
    golden_words(fmt, x_codes, ref_out, golden)
    report['accelerator_testbench'] = run_testbench(root / 'hls', cfg.project_name, golden)
    write_json(golden / 'stream_format.json', fmt.to_dict())

    np.save(golden / 'inputs.npy', x)
    np.save(golden / 'input_codes.npy', x_codes)
    np.save(golden / 'output_codes.npy', ref_out)
    if labels is not None:
        np.save(golden / 'labels.npy', labels)
    if report['error']:
        np.save(golden / 'targets.npy', targets)
    write_json(golden / 'golden.json', {'input_type': im.in_type.to_dict(), 'output_type': im.out_type.to_dict(), 'n': len(x)})
    write_json(ctx.stage / 'reports' / 'verify.json', report)
    console.print(
        f'[bold green]bit-exact[/]: reference == C simulation on {len(x)} vectors; accelerator testbench: '
        f'{report["accelerator_testbench"]}; QKeras == reference: '
        f'{"exact on every layer" if exact else ("exact on " + ", ".join(comparable) if comparable else "not compared code for code") + " (" + why + ")"}'
        f'{_largest(report["qkeras_vs_reference"]["max_deviation_lsb"])}; '
        + _outcome(report)
    )
    agree = report['qkeras_vs_reference']['argmax_agreement']
    if agree is not None and agree < 1:  # the hardware is exact to its reference, but decides otherwise than the float model
        differ = int(round((1 - agree) * len(x)))
        console.print(f'[yellow]note:[/] the hardware picks another class than QKeras on {differ} of {len(x)} vectors '
                      f'({why}); a narrower result type on the last layers, or output: logits, keeps the '
                      'decisions closer', soft_wrap=True)
    return report


def _outcome(report: dict) -> str:
    """The last words of verify's line: accuracy, the regression error, or why there is neither."""
    if report['accuracy']:
        return f'accuracy {report["accuracy"]["csim"]:.3f}'
    if report['error']:
        e, f = report['error']['hardware_vs_targets'], report['error']['hardware_vs_float_model']
        return (f'regression: hardware vs targets MSE {e["mse"]:.4g}, MAE {e["mae"]:.4g}; vs the float model MSE '
                f'{f["mse"]:.4g}, MAE {f["mae"]:.4g}')
    return report['golden']
