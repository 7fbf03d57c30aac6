"""Resource estimates per layer, for our templates and for hls4ml's own Dense / Conv2D.

Model (documented so it can be checked against csynth reports when Vitis HLS runs):
- cycles of the MAC loop = ReuseFactor (II=1); hls4ml's Dense: multipliers = ceil(weights / ReuseFactor);
- ours iterates over kept weights only; hls4ml's Resource Dense over all n_in x n_out
  (zeros included, STACK_NOTES), its Latency strategy (RF=1) drops constant-zero multiplies;
- the block-sparse kernel follows the gather schedule (flow/runtime/schedule.py): its multipliers
  are the schedule's live ones (flow/runtime/static_engine.py: not always ceil(kept / RF)), and the
  weights it stores are its n_mult x RF slots, zero padding included; it stores no index
  (``index_bits`` 0): its generated kernel holds the schedule as case tables and gates of the
  cycle, logic that ``lut_estimate`` counts (the footprint counts the method's one index per kept block);
- weight memory = stored weights x width. With RF > 1 both templates reshape the weights into
  one ROM of width multipliers x weight bits and depth RF; BRAM18 is the cheapest tiling of
  that ROM by the RAMB18 aspect ratios. With RF = 1 the weights are constants in logic (0 BRAM).
- each kind's template estimates itself (``RefLayer.engine_estimate``: the block-sparse gather
  schedule, SST's decoders, the block-sparse LSTM's [x_t, h] x 4u product per time step); the
  dense baseline is hls4ml's Dense on the same kernel (T times for a sequence layer);
- a windowed layer (io_stream) counts cycles per image: a kind with its own pixel loop gives them
  (``image_cycles`` in its engine estimate: the block-sparse convolution), hls4ml's loop runs the
  engine per pixel by its strategy (``PatchGeometry.image_cycles``);
- weightless layers are hls4ml's own on both sides: pooling behind its line buffer at II 1 a pixel;
  global pooling, padding, upsampling and repacking one pixel a cycle (``RefLayer.stream_pixels``);
  an average's division by a window that is not a power of two one multiplier per channel
  (``RefLayer.constant_dividers``: HLS multiplies by the reciprocal).
"""

from __future__ import annotations

import math

from flow.plan import Plan
from flow.runtime.costs import bram18
from flow.runtime.ref_layers import DA, IO_TYPES
from flow.runtime.reference import IntegerModel
from flow.stages.accel import stream_format
from flow.stages.footprint import layer_footprint

LINE_BUFFER_BRAM_MIN_BITS = 18 * 1024  # a line-buffer shift register holding this many bits or more: BRAM18, else SRLs
SRL_DEPTH = 32  # SRLC32E: one LUT is a 32-deep shift register of one bit


def engine(weights: int, rf: int, wbits: int) -> dict:
    """hls4ml's Dense: ceil(weights / RF) multipliers, RF cycles, every weight stored."""
    mult = math.ceil(weights / rf)
    return {
        'multipliers': mult,
        'cycles': rf,
        'weight_memory_bits': weights * wbits,
        'bram18': bram18(mult * wbits, rf) if rf > 1 else 0,
    }


def line_buffer(layer, in_bits: int) -> dict:
    """hls4ml's line buffer of a windowed layer: (window height - 1) x C shift registers of depth the
    padded input width, ``in_bits`` wide; each in SRLs, or in BRAM18 from LINE_BUFFER_BRAM_MIN_BITS."""
    (_, w, c), (fh, _), (_, _, pl, pr) = layer.in_shape, layer.filt, layer.pads
    depth, regs = w + pl + pr, (fh - 1) * c
    in_bram = depth * in_bits >= LINE_BUFFER_BRAM_MIN_BITS
    return {
        'line_buffer_bits': regs * depth * in_bits,
        'line_buffer_bram18': regs * bram18(in_bits, depth) if in_bram else 0,
        'line_buffer_srl_luts': 0 if in_bram else regs * math.ceil(depth / SRL_DEPTH) * in_bits,
    }


def _streamed(est: dict, layer, in_type, strategy: str | None = None) -> dict:
    """A windowed layer in io_stream, behind a line buffer: cycles per image. A side whose engine
    estimate gives them (``image_cycles``: its own pixel loop) keeps them; on the others hls4ml's
    pixel loop runs the engine (``layer.image_cycles``), by the plan's ``strategy`` (the hls4ml
    baseline of a layer without one: Latency, its pipelined loop)."""
    if in_type is None:
        raise ValueError(f"layer '{layer.name}': its line buffer needs the input type (in_type)")
    in_pixels, out_pixels = layer.pixels_per_image()  # padding included
    est['pixels'] = {'in': in_pixels, 'out': out_pixels}
    lb = line_buffer(layer, in_type.width)
    for side in ('ours', 'hls4ml_dense'):
        e = est[side]
        if 'image_cycles' not in e:
            e['cycles_per_pixel'] = e['cycles']
            e['image_cycles'] = layer.image_cycles(e['cycles'], strategy)
            e['cycles'] = sum(e['image_cycles'].values())
        e.update(lb)
    return est


def _weightless(layer, shape: list, cycles: int) -> dict:
    """hls4ml's own template on both sides, no weights: its constant dividers (average pooling) as
    multipliers, ``cycles`` per image (or per pixel, for a windowed layer)."""
    side = {'multipliers': layer.constant_dividers(), 'cycles': cycles, 'weight_memory_bits': 0, 'bram18': 0,
            'index_bits': 0}
    return {
        'kind': layer.kind,
        'shape': shape,
        'reuse_factor': 1,
        'kept_weights': 0,
        'density': None,
        'ours': dict(side),
        'hls4ml_dense': dict(side),
        'ratio_ours_vs_dense': dict.fromkeys(('multipliers', 'weight_memory_bits', 'bram18')),
        'ratio_ours_vs_limit': dict.fromkeys(('multipliers', 'weight_memory_bits', 'bram18')),
    }


def _window_estimate(layer, in_type) -> dict:
    """A windowed layer without weights (pooling): comparisons or a sum and its divider, a line
    buffer, II = 1."""
    fh, fw = layer.filt
    c = layer.in_shape[2]
    return _streamed(_weightless(layer, [fh * fw * c, c], 1), layer, in_type)


def _pixel_loop_estimate(layer) -> dict:
    """A weightless layer streamed pixel by pixel without a line buffer (global pooling, padding,
    upsampling, repacking): one pixel a cycle, in or out, whichever there are more of."""
    in_px, out_px = layer.stream_pixels()
    est = _weightless(layer, [in_px, out_px], max(in_px, out_px))
    est['pixels'] = {'in': in_px, 'out': out_px}
    return est


def layer_estimate(layer, rf: int = 1, strategy: str | None = 'resource', in_type=None, in_size: int | None = None) -> dict | None:
    """Estimate for one reference layer at ReuseFactor ``rf`` with its plan's ``strategy`` (which
    applies to hls4ml's Dense; distributed_arithmetic: hls4ml's DA Dense). Given the layer's input
    type, our engine's LUT/FF are estimated too where its kind can.
    ``in_size``: the layer's input size, which gives a recurrent layer its time steps. A windowed
    layer (convolution, pooling: ``line_buffer``) streams pixels through a line buffer and needs
    ``in_type``; its cycles are per image."""
    fp = layer_footprint(layer)
    if fp is None:
        if layer.line_buffer:
            return _window_estimate(layer, in_type)
        return _pixel_loop_estimate(layer) if layer.stream_pixels() else None
    n_in, n_out = fp['shape']
    da = strategy == DA
    dense = engine(n_in * n_out, rf, layer.weight_code_bits)
    seq = {}
    if layer.sequence_input:  # both sides run the [x_t, h] product once per time step
        seq = {'steps': (in_size or layer.n_in) // layer.n_in}
        dense['cycles'] *= seq['steps']
    kept = int((layer.dense_weight() != 0).sum())
    ours = None if da else layer.engine_estimate(rf, in_type, **seq)
    if da:  # hls4ml's DA Dense: constants in shift-add logic, no multiplier
        ours = {'multipliers': 0, 'cycles': 1, 'weight_memory_bits': 0, 'bram18': 0}
    elif ours is not None:
        kept = fp['kept_weights']
    else:  # a plain Dense layer is hls4ml's own template on both sides
        if strategy == 'latency' and rf == 1:
            dense['multipliers'] = kept  # HLS removes multiplies by constant zero
        ours = dict(dense)
    ours.setdefault('index_bits', fp['index_bits'])
    limit = {k: dense[k] * kept / (n_in * n_out) for k in ('multipliers', 'weight_memory_bits', 'bram18')}
    est = {
        'kind': layer.kind,
        'shape': [n_in, n_out],
        'reuse_factor': rf,
        'kept_weights': kept,
        'density': kept / (n_in * n_out),
        'ours': ours,
        'hls4ml_dense': dense,
        'ratio_ours_vs_dense': {k: (ours[k] / dense[k] if dense[k] else None) for k in ('multipliers', 'weight_memory_bits', 'bram18')},
        'ratio_ours_vs_limit': {k: (ours[k] / limit[k] if limit[k] else None) for k in limit},
    }
    if 'found_sparsity' in fp:  # zeros found in a dense layer's kernel (deployed block-sparse when it saves bits)
        est['found_sparsity'] = fp['found_sparsity']
    return _streamed(est, layer, in_type, strategy) if layer.line_buffer else est


def estimate_model(im: IntegerModel, plan: Plan, board, rtl: dict | None = None) -> dict:
    """``rtl``: the rtl step's measured resources (reports/rtl_resources.json) when it built them.
    In io_stream (``plan.io_type``) the layers run concurrently (dataflow), so the model's
    ``interval`` is its slowest layer's cycles per image (``cycles``, the latency, stays the sum)."""
    io_type = plan.io_type
    if io_type not in IO_TYPES:
        raise ValueError(f'unknown io_type {io_type!r}; known: {", ".join(IO_TYPES)}')
    layers, sizes, in_types, sources = {}, im.sizes(), im.in_types(), im.sources()
    for layer in im.layers[1:]:
        p = plan[layer.name]
        est = layer_estimate(layer, p.reuse_factor or 1, p.strategy, in_types[layer.name], sizes[sources[layer.name][0]])
        if est:
            layers[layer.name] = est
    total = {}
    for side in ('ours', 'hls4ml_dense'):
        total[side] = {k: sum(l[side][k] for l in layers.values()) for k in ('multipliers', 'weight_memory_bits', 'bram18')}
        # latency adds up: one after another in io_parallel, and the first pixel's way through in io_stream
        total[side]['cycles'] = sum(l[side]['cycles'] for l in layers.values())
        if any('line_buffer_bits' in l[side] for l in layers.values()):
            for k in ('line_buffer_bits', 'line_buffer_bram18', 'line_buffer_srl_luts'):
                total[side][k] = sum(l[side].get(k, 0) for l in layers.values())
        if io_type == 'io_stream' and layers:  # dataflow: a new image every slowest-layer's cycles
            slowest = max(layers, key=lambda n: layers[n][side]['cycles'])
            total[side]['interval'], total[side]['slowest_layer'] = layers[slowest][side]['cycles'], slowest
        elif layers:  # the io_parallel AXI top reads a sample, runs the network, writes the result: no overlap
            fmt = stream_format(im)
            total[side]['transfer_cycles'] = fmt.in_words + fmt.out_words  # one stream word per cycle
            total[side]['interval'] = total[side]['cycles'] + total[side]['transfer_cycles']
    total['io_type'] = io_type
    cap = board.resources
    total['board'] = board.name
    total['fit'] = {
        # the LSTM's cell/hidden products (state_multipliers) need multipliers too
        'dsp': {'used': total['ours']['multipliers'] + sum(l['ours'].get('state_multipliers', 0) for l in layers.values()),
                'available': cap.dsp, 'source': 'estimated'},
        'bram18': {'used': total['ours']['bram18'] + total['ours'].get('line_buffer_bram18', 0), 'available': cap.bram18,
                   'source': 'estimated'},
    }
    if 'line_buffer_bits' in total['ours']:
        total['fit']['bram18']['detail'] = (f"weight ROMs {total['ours']['bram18']} + line buffers "
                                            f"{total['ours']['line_buffer_bram18']} (shift registers of "
                                            f'{LINE_BUFFER_BRAM_MIN_BITS} bits or more; the others in SRLs: '
                                            f"{total['ours']['line_buffer_srl_luts']} LUTs)")
    measured = rtl if rtl and rtl.get('built') else None
    engines_measured = {n: e for n, e in ((rtl or {}).get('engines') or {}).items() if n in layers}
    if measured or engines_measured:
        # the rtl step synthesized exactly these layers' logic: da4ml's, as hls4ml's DA strategy builds
        # them (when the network has a da4ml form), and the time-multiplexed engine the block-sparse template builds
        logic = {n: measured['layers'][n] for n in layers if plan[n].da} if measured else {}
        logic.update(engines_measured)
        for n, m in logic.items():
            layers[n]['ours']['lut_measured'], layers[n]['ours']['ff_measured'] = m['lut'], m['ff']
        others = [n for n in layers if n not in logic]
        detail = (f'yosys, for {", ".join(logic)}' +
                  (f'; {", ".join(others)} (hls4ml\'s own templates) not estimated' if others else ''))
        for k, cap_k in (('lut', cap.lut), ('ff', cap.ff)):
            if logic:
                total['fit'][k] = {'used': sum(m[k] for m in logic.values()), 'available': cap_k, 'source': 'measured',
                                   'detail': detail}
    else:  # no RTL level: our engines' LUT/FF from their schedules' estimate
        engines = {n: l['ours'] for n, l in layers.items() if 'lut_estimate' in l['ours']}
        others = [n for n in layers if n not in engines]
        for k, cap_k in (('lut', cap.lut), ('ff', cap.ff)):
            if engines:
                total['fit'][k] = {'used': sum(o[f'{k}_estimate'] for o in engines.values()), 'available': cap_k,
                                   'source': 'estimated', 'detail': f'the engines of the generated kernels {", ".join(engines)}' +
                                   (f'; {", ".join(others)} not estimated' if others else '')}
    for v in total['fit'].values():
        v['margin'] = v['available'] - v['used']
    total['fits'] = all(v['margin'] >= 0 for v in total['fit'].values())
    if measured:
        total['fully_parallel_measured'] = {'fit': measured['fit'], 'fits': measured['fits'], 'design': measured['design'],
                                            'pipeline': measured.get('pipeline')}
    return {'layers': layers, 'total': total,
            'note': 'multipliers are counted as DSPs: an upper bound (HLS maps narrow products to LUTs); LUT/FF of '
                    "hls4ml's own templates are not estimated (measured for the logic the rtl step synthesizes: DA layers, "
                    'the engines of the generated kernels)'}


def print_estimate(est: dict, console) -> None:
    from rich.table import Table

    from flow.infra.progress import print_table

    t = Table(title='Estimate: ours vs hls4ml (same weights, same ReuseFactor)')
    streamed = any('line_buffer_bits' in l['ours'] for l in est['layers'].values())
    cols = ['layer', 'RF', 'kept', 'mult', 'mult dense', 'adders', 'cycles/image', 'mem bits', 'mem dense', 'BRAM18',
            'BRAM18 dense']
    if streamed:  # windowed layers (io_stream): their pixels and line buffers
        cols += ['pixels in/out', 'line buf bits', 'line buf BRAM18', 'line buf SRL LUTs']
    for col in cols:
        t.add_column(col, justify='right')
    for name, l in est['layers'].items():
        o, d = l['ours'], l['hls4ml_dense']
        row = [name, str(l['reuse_factor']), str(l['kept_weights']), str(o['multipliers']), str(d['multipliers']),
               str(o.get('adders', '-')), str(o['cycles']), str(o['weight_memory_bits']), str(d['weight_memory_bits']),
               str(o['bram18']), str(d['bram18'])]
        if streamed:
            px = l.get('pixels')
            row += [f"{px['in']}/{px['out']}" if px else '-'] + [str(o.get(k, '-')) for k in
                                                                ('line_buffer_bits', 'line_buffer_bram18', 'line_buffer_srl_luts')]
        t.add_row(*row)
    print_table(t, console)
    for name, l in est['layers'].items():
        f = l.get('found_sparsity')
        if f and f['deployed_sparse']:
            console.print(f"layer '{name}': {f['zero_block_fraction']:.0%} of its {f['unit']} found zero, deployed "
                          f"block-sparse: {l['hls4ml_dense']['multipliers']} -> {l['ours']['multipliers']} multipliers at "
                          f"RF {l['reuse_factor']}", soft_wrap=True)
    tot = est['total']
    o, d = tot['ours'], tot['hls4ml_dense']
    if 'slowest_layer' in o:
        console.print(f"{tot['io_type']} (dataflow): latency {o['cycles']} cycles (hls4ml {d['cycles']}), "
                      f"interval {o['interval']} cycles per image, slowest layer {o['slowest_layer']} "
                      f"(hls4ml {d['interval']}, {d['slowest_layer']})", soft_wrap=True)
    elif 'interval' in o:
        console.print(f"{tot['io_type']} (sequential AXI top, no overlap between samples): interval {o['interval']} cycles "
                      f"per sample = latency {o['cycles']} + {o['transfer_cycles']} stream words in and out "
                      f"(hls4ml {d['interval']})", soft_wrap=True)
    verdict = '[green]fits[/]' if tot['fits'] else '[red]does not fit[/]'
    margins = ', '.join(f"{k}: {v['used']}/{v['available']} (margin {v['margin']}, {v['source']})"
                        for k, v in tot['fit'].items())
    console.print(f"{tot['board']}, the HLS design: {verdict} — {margins}", soft_wrap=True)
    for k, v in tot['fit'].items():
        if 'detail' in v:
            console.print(f"[dim]{k}: {v['detail']}[/]", soft_wrap=True)
    fp = tot.get('fully_parallel_measured')
    if fp:
        verdict = '[green]fits[/]' if fp['fits'] else '[red]does not fit[/]'
        margins = ', '.join(f"{k}: {v['used']}/{v['available']}" for k, v in fp['fit'].items())
        pipe = fp.get('pipeline') or {}
        depth = (f"; {pipe['stages']} pipeline stages, logic depth per stage up to {pipe['max_stage_logic_depth']} "
                 f"(plausible at the clock: {pipe['logic_depth_budget']})" if pipe else '')
        console.print(f"{tot['board']}, every layer fully parallel (da4ml RTL, measured): {verdict} — {margins}{depth}",
                      soft_wrap=True)
