"""Memory footprint: every bit the hardware stores, against the same network dense in float.

Counted per layer by its reference class (``RefLayer.storage``): kept weight values at their
width, index bits, scales (SST), biases at their width. hls4ml's own Dense stores every weight.
Baselines: the same layer dense (all n_in x n_out weights + biases) at float32 and float64.
"""

from __future__ import annotations

from flow.runtime.reference import IntegerModel


def layer_footprint(layer) -> dict | None:
    """The layer's stored bits (its reference class counts its own format) against it dense in float."""
    st = layer.storage()
    if st is None:
        return None
    n_in, n_out = st['shape']
    params = n_in * n_out + n_out
    fp = {'kind': layer.kind, 'scale_bits': 0, **st, 'density': st['kept_weights'] / (n_in * n_out),
          'dense_float32_bits': params * 32, 'dense_float64_bits': params * 64}
    fp['total_bits'] = fp['weight_bits'] + fp['index_bits'] + fp['scale_bits'] + fp['bias_bits']
    if layer.found:  # zeros another tool's pruning left in a dense kernel (flow/export/found.py)
        fp['found_sparsity'] = layer.found
    return fp


def found_line(name: str, f: dict) -> str:
    """One line on the sparsity found in layer ``name``'s kernel (its ``found_sparsity``)."""
    zero = f"{f['zero_block_fraction']:.0%} of its {f['unit']} zero ({f['pattern']})"
    if not f['deployed_sparse']:
        return (f"layer '{name}': found {zero}: kept dense (block-sparse would store {f['sparse_bits']:,} weight and "
                f"index bits, dense {f['dense_bits']:,})")
    how = 'block_shape from the config' if f['forced'] else 'fewest bits'
    return (f"layer '{name}': found {zero}: deployed block-sparse ({f['block'][0]}x{f['block'][1]} blocks, {how}), "
            f"{f['dense_bits']:,} -> {f['sparse_bits']:,} weight and index bits, density {f['density']:.3f}")


def footprint(im: IntegerModel) -> dict:
    layers = {l.name: f for l in im.layers if (f := layer_footprint(l))}
    keys = ['kept_weights', 'weight_bits', 'index_bits', 'scale_bits', 'bias_bits', 'total_bits', 'dense_float32_bits', 'dense_float64_bits']
    total = {k: sum(f[k] for f in layers.values()) for k in keys}
    dense_weights = sum(f['shape'][0] * f['shape'][1] for f in layers.values())
    total['density'] = total['kept_weights'] / dense_weights if dense_weights else 0.0
    # None: nothing stored (a model of activations only), so no ratio to give
    total['ratio_vs_float32'] = total['dense_float32_bits'] / total['total_bits'] if total['total_bits'] else None
    total['ratio_vs_float64'] = total['dense_float64_bits'] / total['total_bits'] if total['total_bits'] else None
    return {'layers': layers, 'total': total}


def print_footprint(fp: dict, console) -> None:
    from rich.table import Table

    from flow.infra.progress import print_table

    t = Table(title='Memory footprint (bits)')
    for col in ('layer', 'kept weights', 'density', 'weights', 'index', 'scale', 'bias', 'total', 'dense f32', 'dense f64'):
        t.add_column(col, justify='right')
    rows = list(fp['layers'].items()) + [('TOTAL', fp['total'])]
    for name, f in rows:
        t.add_row(name, str(f['kept_weights']), f"{f['density']:.3f}", str(f['weight_bits']), str(f['index_bits']),
                  str(f['scale_bits']), str(f['bias_bits']), str(f['total_bits']), str(f['dense_float32_bits']), str(f['dense_float64_bits']))
    print_table(t, console)
    for name, f in fp['layers'].items():
        if len(f.get('index_bits_per_level', ())) > 1:  # HCGS: what each level's index costs
            console.print(f"{name}: index per level {' + '.join(map(str, f['index_bits_per_level']))} bits")
    for name, f in fp['layers'].items():
        if 'found_sparsity' in f:
            console.print(found_line(name, f['found_sparsity']), soft_wrap=True)
    tot = fp['total']
    if tot['ratio_vs_float32'] is None:
        console.print('footprint: the model stores no weights')
        return
    console.print(f"footprint: {tot['ratio_vs_float32']:.1f}x smaller than dense float32, {tot['ratio_vs_float64']:.1f}x than float64")
