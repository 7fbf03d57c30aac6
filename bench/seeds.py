"""Accuracy over seeds, shared by the Fashion-MNIST benches: one summary shape and one markdown table.

spread = the sample standard deviation over the seeds (ddof 1; 0 with one seed), as a fraction like
the mean.
"""

from __future__ import annotations

import numpy as np


def mean_spread(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {'mean': float(v.mean()), 'spread': float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def summarize(rows: list[dict], key: str, base: str = 'float') -> dict:
    """Per-seed rows (``key``: the method's name, ``accuracy``, ``ratio_vs_float32``) -> the results shape
    ``{"float": {"mean", "spread"}, "methods": {name: {"mean", "spread", "x_smaller_f32"}}}``."""
    names = list(dict.fromkeys(r[key] for r in rows))
    out = {'float': None, 'methods': {}}
    for name in names:
        mine = [r for r in rows if r[key] == name]
        acc = mean_spread([r['accuracy'] for r in mine])
        if name == base:
            out['float'] = acc
        else:  # the mask and bits depend on the seed only through which blocks: the ratio is the same
            out['methods'][name] = {**acc, 'x_smaller_f32': float(np.mean([r['ratio_vs_float32'] for r in mine]))}
    return out


def markdown(summary: dict, labels: dict[str, str], bits: dict[str, int], extra: dict[str, dict] | None = None) -> str:
    """The README table: accuracy mean +- spread in percent, the gap to float, stored bits, ratio (and any
    ``extra`` columns: {column: {method: text}})."""
    extra = extra or {}
    head = ['model', 'test accuracy (mean +- sd)', 'vs float (points)', 'stored bits', 'x smaller than float32', *extra]
    lines = ['| ' + ' | '.join(head) + ' |', '|---|' + '---:|' * (len(head) - 1)]
    base = summary['float']
    rows = [('float', base, None, 1.0)] + [(m, s, s['mean'] - base['mean'], s['x_smaller_f32'])
                                          for m, s in summary['methods'].items()]
    for name, s, gap, ratio in rows:
        cells = [labels.get(name, name), f"{100 * s['mean']:.2f}% +- {100 * s['spread']:.2f}",
                 '' if gap is None else f'{100 * gap:+.2f}', f'{bits[name]:,}', f'{ratio:.1f}',
                 *(col.get(name, '') for col in extra.values())]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
