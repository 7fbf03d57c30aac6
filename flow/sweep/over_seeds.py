"""A sweep with ``seed`` as an axis, summarized per setting over its seeds: the accuracy's mean and
sample standard deviation, and the figures that do not depend on the seed (stored bits, multipliers).
Written as ``summary.csv`` and ``summary.md`` (a Markdown table to paste) next to ``results.csv``.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from flow.infra.progress import console, print_table
from flow.sweep.fronts import accuracy_key, num
from flow.sweep.status import DONE_CODES

FIXED = ('stored_bits', 'compression_vs_float32', 'multipliers')  # one value per setting (the same mask at every seed or not)


def summarize(rows: list[dict]) -> list[dict]:
    """One row per (method, setting) whose points finished with an accuracy, in the sweep's order; []
    when ``seed`` is not an axis."""
    acc = accuracy_key(rows)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if 'setting' in r and r['exit_code'] in DONE_CODES and num(r.get(acc)) is not None:
            groups.setdefault((r['method'], r['setting']), []).append(r)
    out = []
    for (method, setting), rs in groups.items():
        accs = [num(r[acc]) for r in rs]
        row = {'method': method, 'setting': setting, 'seeds': len(rs), 'accuracy': acc, 'mean': statistics.fmean(accs),
               'spread': statistics.stdev(accs) if len(accs) > 1 else None}
        for k in FIXED:
            values = [num(r.get(k)) for r in rs if num(r.get(k)) is not None]
            row[k] = statistics.fmean(values) if values else None
        out.append(row)
    return out


def markdown(summary: list[dict]) -> str:
    acc = summary[0]['accuracy']
    lines = [f'| method | setting | seeds | {acc} (mean +- sd, %) | stored bits | x smaller than float32 | multipliers |',
             '|---|---|---:|---:|---:|---:|---:|']
    for s in summary:
        sd = '' if s['spread'] is None else f" +- {100 * s['spread']:.2f}"
        fmt = lambda v, f: '' if v is None else format(v, f)  # noqa: E731
        lines.append(f"| {s['method']} | {s['setting'] or 'base'} | {s['seeds']} | {100 * s['mean']:.2f}{sd} | "
                     f"{fmt(s['stored_bits'], ',.0f')} | {fmt(s['compression_vs_float32'], '.1f')} | {fmt(s['multipliers'], '.0f')} |")
    return '\n'.join(lines) + '\n'


def write(out: Path, rows: list[dict]) -> list[Path]:
    """summary.csv and summary.md of ``rows`` (nothing where seed is not an axis), and the table printed."""
    from rich.table import Table

    summary = summarize(rows)
    if not summary:
        return []
    cols = list(summary[0])
    with open(out / 'summary.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(summary)
    (out / 'summary.md').write_text(markdown(summary))
    table = Table(title=f"over seeds: {summary[0]['accuracy']} mean +- sample standard deviation")
    for c in ('method', 'setting', 'seeds', 'mean', 'sd', 'stored_bits', 'multipliers'):
        table.add_column(c, justify='left' if c in ('method', 'setting') else 'right')
    for s in summary:
        table.add_row(s['method'], s['setting'] or 'base', str(s['seeds']), f"{100 * s['mean']:.2f}%",
                      '' if s['spread'] is None else f"{100 * s['spread']:.2f}",
                      *('' if s[k] is None else f'{s[k]:,.0f}' for k in ('stored_bits', 'multipliers')))
    print_table(table, console)
    return [out / 'summary.csv', out / 'summary.md']
