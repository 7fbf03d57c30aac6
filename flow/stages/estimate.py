"""Resource estimates per layer, for our templates and for hls4ml's own Dense / Conv2D.

Model (documented so it can be checked against csynth reports when Vitis HLS runs):
- cycles of the MAC loop = ReuseFactor (II=1); hls4ml's Dense: multipliers = ceil(weights / ReuseFactor);
- ours iterates over kept weights only; hls4ml's Resource Dense over all n_in x n_out
  (zeros included, STACK_NOTES), its Latency strategy (RF=1) drops constant-zero multiplies;
- ours follows the gather schedule (flow/runtime/schedule.py): lanes of block_out multipliers, so its
  multipliers are the schedule's live ones (flow/runtime/static_engine.py: not always ceil(kept / RF)),
  and the weights it stores are its n_mult x RF slots, zero padding included; it stores no index
  (``index_bits`` 0): its generated kernel holds the schedule as case tables and gates of the
  cycle, logic that ``lut_estimate`` counts (the footprint counts the method's one index per kept block);
- weight memory = stored weights x width. With RF > 1 both templates reshape the weights into
  one ROM of width multipliers x weight bits and depth RF; BRAM18 is the cheapest tiling of
  that ROM by the RAMB18 aspect ratios. With RF = 1 the weights are constants in logic (0 BRAM).
- the block-sparse LSTM (``lstm_engine``): its [x_t, h] x 4u product per time step, T steps one
  after another; the dense baseline is hls4ml's Dense on the same [x_t, h] kernel, T times.
"""

from __future__ import annotations

import math

from flow.stages.footprint import layer_footprint
from flow.runtime.ref_conv import PatchGeometry
from flow.runtime.ref_layers import IO_TYPES
from flow.runtime.reference import IntegerModel
from flow.runtime.schedule import gather
from flow.runtime.static_engine import static_engine

LINE_BUFFER_BRAM_MIN_BITS = 18 * 1024  # a line-buffer shift register holding this many bits or more: BRAM18, else SRLs
SRL_DEPTH = 32  # SRLC32E: one LUT is a 32-deep shift register of one bit

RAMB18_SHAPES = [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)]  # (depth, width)


def bram18(width_bits: int, depth: int) -> int:
    if depth <= 1 or width_bits == 0:
        return 0
    return min(math.ceil(depth / d) * math.ceil(width_bits / w) for d, w in RAMB18_SHAPES)


def engine(weights: int, rf: int, wbits: int) -> dict:
    mult = math.ceil(weights / rf)
    return {
        'multipliers': mult,
        'cycles': rf,
        'weight_memory_bits': weights * wbits,
        'bram18': bram18(mult * wbits, rf) if rf > 1 else 0,
    }


def _table_bits(table) -> int:
    """A stored table of unsigned integers, each at the width of the largest (at least 1 bit),
    as flow/hls/block_sparse_dense.py types it."""
    return table.size * max(1, int(table.max(initial=0)).bit_length())


def gather_engine(layer, rf: int, in_type=None) -> dict:
    """The block-sparse template: the gather schedule's multipliers and stored slots (padding included)."""
    wbits = layer.weight_code_bits
    sched = gather(layer, rf)
    ours = {
        'multipliers': len(static_engine(sched).multipliers),  # a bank of zeros only is no multiplier
        'cycles': rf,
        'weight_memory_bits': sched.slots * wbits,  # padding is stored too
        'bram18': bram18(sched.n_mult * wbits, rf) if rf > 1 else 0,
        'index_bits': 0,  # no stored index: the generated kernel's case tables and gates (in lut_estimate)
        'padding': sched.padding,
    }
    if in_type is not None:
        logic = sched.logic_estimate(layer, in_type)
        ours['lut_estimate'], ours['ff_estimate'] = logic['lut'], logic['ff']
    return ours


def sst_engine(layer, rf: int, in_type=None) -> dict:
    """The SST template: n_dec decoders, each K add/subtract slots per cycle, no multiplier in the
    datapath; the scale is one constant product per output (a shift, no multiplier, when it is a
    power of two). Its ROM: n_dec codewords per cycle; the pattern ROM is the index."""
    n_work = layer.codes.size
    n_dec = math.ceil(n_work / rf)
    bits = layer.code.code_bits
    return {
        'multipliers': 0 if layer.scale_po2 else layer.n_out,
        'adders': n_dec * layer.nonzeros + n_dec,  # the K-input add/subtract and the accumulate
        'cycles': rf,
        'weight_memory_bits': n_dec * rf * bits,  # codewords, padding included
        'bram18': bram18(n_dec * bits, rf) if rf > 1 else 0,
    }


LSTM_STEP_OVERHEAD = 2  # cycles per time step after the MAC: the hard activations, then c and h (dependent products)


def lstm_engine(layer, rf: int, in_type=None, steps: int = 1) -> dict:
    """The block-sparse LSTM template (hls_templates/nnet_block_sparse_lstm.h): per kernel
    ceil(kept blocks / RF) lanes, each one kept block's bi x bo products for the 4 gates per cycle;
    the time steps run one after another (h and c carry over): steps x (RF + overhead) cycles.
    Weights are the packed kept blocks (no padding stored); ONE index per kept block of each
    kernel, shared by the 4 gates, at the width the template stores it. The 3 x units products
    of the cell and hidden updates (f c, i g, o tanh(c)) are counted apart: the dense baseline has them too."""
    kernels = ((layer.values, layer.index, layer.block, layer.weight_type.width),
               (layer.recurrent_values, layer.recurrent_index, layer.recurrent_block, layer.recurrent_type.width))
    mult = rom_bits = bram = 0
    for values, index, (bi, bo), wbits in kernels:
        lanes = math.ceil(len(index) / rf)
        mult += lanes * 4 * bi * bo
        rom_bits += values.size * wbits
        bram += bram18(lanes * 4 * bi * bo * wbits, rf) if rf > 1 else 0
    return {
        'multipliers': mult,
        'state_multipliers': 3 * layer.units,
        'cycles_per_step': rf + LSTM_STEP_OVERHEAD,
        'cycles': steps * (rf + LSTM_STEP_OVERHEAD),
        'weight_memory_bits': rom_bits,
        'bram18': bram,
        'index_bits': _table_bits(layer.index) + _table_bits(layer.recurrent_index),
    }


# layer kind -> its template's estimate (layer, ReuseFactor, input type); a kind not listed is
# built by hls4ml's own Dense, the baseline. A kind derived from a listed one (a convolution from
# its dense kind) runs that engine per patch (``engine_for``).
ENGINES = {'block_sparse_dense': gather_engine, 'sst_dense': sst_engine, 'block_sparse_lstm': lstm_engine}


def engine_for(layer):
    """The engine of the first class in the layer's MRO whose own ``kind`` is listed in ENGINES
    (None: hls4ml's Dense). A convolution's per-patch engine is thus its dense base's."""
    for cls in type(layer).__mro__:
        kind = cls.__dict__.get('kind')
        if kind in ENGINES:
            return ENGINES[kind]
    return None


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


def _streamed(est: dict, layer, in_type) -> dict:
    """A windowed layer in io_stream: its engine (if any) runs once per streamed input pixel, behind
    a line buffer; the same on both sides (ours reuses hls4ml's line buffer)."""
    if in_type is None:
        raise ValueError(f"layer '{layer.name}': its line buffer needs the input type (in_type)")
    in_pixels, out_pixels = layer.pixels_per_image()  # padding included
    est['pixels'] = {'in': in_pixels, 'out': out_pixels}
    lb = line_buffer(layer, in_type.width)
    for side in ('ours', 'hls4ml_dense'):
        e = est[side]
        e['cycles_per_pixel'] = e['cycles']
        e['cycles'] = in_pixels * e['cycles']
        e.update(lb)
    return est


def _window_estimate(layer, in_type) -> dict:
    """A windowed layer without weights (max pooling): comparisons and a line buffer, II = 1."""
    fh, fw = layer.filt
    c = layer.in_shape[2]
    side = {'multipliers': 0, 'cycles': 1, 'weight_memory_bits': 0, 'bram18': 0, 'index_bits': 0}
    return _streamed({
        'kind': layer.kind,
        'shape': [fh * fw * c, c],
        'reuse_factor': 1,
        'kept_weights': 0,
        'density': None,
        'ours': dict(side),
        'hls4ml_dense': dict(side),
        'ratio_ours_vs_dense': dict.fromkeys(('multipliers', 'weight_memory_bits', 'bram18')),
        'ratio_ours_vs_limit': dict.fromkeys(('multipliers', 'weight_memory_bits', 'bram18')),
    }, layer, in_type)


def layer_estimate(layer, rf: int, strategy: str = 'resource', in_type=None, in_size: int | None = None) -> dict | None:
    """Estimate for one reference layer; ``strategy`` applies to hls4ml's Dense. Given the layer's
    input type, our engine's LUT/FF are estimated too where its kind can (``Schedule.logic_estimate``).
    ``in_size``: the layer's input size, which gives a recurrent layer its time steps. A windowed
    layer (convolution, pooling: a ``PatchGeometry``) streams pixels through a line buffer and needs
    ``in_type``; its cycles are per image."""
    fp = layer_footprint(layer)
    if fp is None:
        return _window_estimate(layer, in_type) if isinstance(layer, PatchGeometry) else None
    n_in, n_out = fp['shape']
    dense = engine(n_in * n_out, rf, layer.weight_code_bits)
    seq = {}
    if getattr(layer, 'sequence_input', False):  # both sides run the [x_t, h] product once per time step
        seq = {'steps': (in_size or layer.n_in) // layer.n_in}
        dense['cycles'] *= seq['steps']
    kept = int((layer.dense_weight() != 0).sum())
    ours_engine = engine_for(layer)
    if strategy == 'distributed_arithmetic':  # hls4ml's DA Dense: constants in shift-add logic, no multiplier
        ours = {'multipliers': 0, 'cycles': 1, 'weight_memory_bits': 0, 'bram18': 0}
    elif ours_engine is not None:
        kept = fp['kept_weights']
        ours = ours_engine(layer, rf, in_type, **seq)
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
    return _streamed(est, layer, in_type) if isinstance(layer, PatchGeometry) else est


def estimate_model(im: IntegerModel, cfg, board, rtl: dict | None = None, io_type: str = 'io_parallel') -> dict:
    """``rtl``: the rtl step's measured resources (reports/rtl_resources.json) when it built them.
    ``io_type``: hls4ml's IOType; in io_stream the layers run concurrently (dataflow), so the model's
    ``interval`` is its slowest layer's cycles per image (``cycles``, the latency, stays the sum)."""
    if io_type not in IO_TYPES:
        raise ValueError(f'unknown io_type {io_type!r}; known: {", ".join(IO_TYPES)}')
    layers, sizes = {}, im.sizes()
    for prev, layer in zip(im.layers, im.layers[1:]):
        est = layer_estimate(layer, cfg.reuse_for(layer.name), cfg.strategy_for(layer.name), prev.out_type,
                             sizes[prev.name])
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
    if io_type == 'io_stream':
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
    if measured:
        # the rtl step synthesized exactly these layers' logic: da4ml's, as hls4ml's DA strategy builds
        # them, and the time-multiplexed engine the block-sparse template builds
        logic = {n: measured['layers'][n] for n in layers if cfg.strategy_for(n) == 'distributed_arithmetic'}
        logic.update({n: e for n, e in measured.get('engines', {}).items() if n in layers})
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
                                   'source': 'estimated', 'detail': f'the block-sparse engines {", ".join(engines)}' +
                                   (f'; {", ".join(others)} not estimated' if others else '')}
    for v in total['fit'].values():
        v['margin'] = v['available'] - v['used']
    total['fits'] = all(v['margin'] >= 0 for v in total['fit'].values())
    if measured:
        total['fully_parallel_measured'] = {'fit': measured['fit'], 'fits': measured['fits'], 'design': measured['design']}
    return {'layers': layers, 'total': total,
            'note': 'multipliers are counted as DSPs: an upper bound (HLS maps narrow products to LUTs); LUT/FF of '
                    "hls4ml's own templates are not estimated (measured for the logic the rtl step synthesizes: DA layers, "
                    'block-sparse engines)'}


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
    tot = est['total']
    if 'interval' in tot['ours']:
        o, d = tot['ours'], tot['hls4ml_dense']
        console.print(f"{tot.get('io_type', 'io_stream')} (dataflow): latency {o['cycles']} cycles (hls4ml {d['cycles']}), "
                      f"interval {o['interval']} cycles per image, slowest layer {o['slowest_layer']} "
                      f"(hls4ml {d['interval']}, {d['slowest_layer']})", soft_wrap=True)
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
        console.print(f"{tot['board']}, every layer fully parallel (da4ml RTL, measured): {verdict} — {margins}", soft_wrap=True)
