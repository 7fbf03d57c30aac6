"""The sweep's plots (matplotlib, Agg): accuracy vs stored bits per method with the Pareto front,
and accuracy vs multipliers and vs LUTs of the HLS design (the estimate's; the generated kernels' engines
measured where the rtl step ran), each with its front."""

from __future__ import annotations

from pathlib import Path

from flow.infra.progress import console
from flow.sweep.status import DONE_CODES


MAX_LABELS = 12  # more points than this: no label on each (they would overlap; results.csv has them)


def _pts(rows, x, y, only=None):
    from flow.sweep.fronts import num

    out = []
    for r in rows:
        if r['exit_code'] not in DONE_CODES or (only is not None and not r.get(only)):
            continue
        xv, yv = num(r.get(x)), num(r.get(y))
        if xv is not None and yv is not None:
            out.append((xv, yv, r))
    return out


def _scatter(ax, rows, x, y, front_key, xlabel, ylabel):
    methods = sorted({r['method'] for r in rows})
    markers = 'osD^vP*X'
    for i, m in enumerate(methods):
        pts = _pts([r for r in rows if r['method'] == m], x, y)
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=markers[i % len(markers)], s=36, alpha=0.8, label=m)
            for xv, yv, r in pts if len(rows) <= MAX_LABELS else ():
                ax.annotate(r['label'], (xv, yv), fontsize=6, xytext=(3, 3), textcoords='offset points')
    if front_key is None:  # a front computed here, for an axis the table does not mark
        from flow.sweep.fronts import pareto

        front_key = '_front'
        rows = [dict(r, _front=m) for r, m in zip(rows, pareto(rows, y, x))]
    front = sorted(_pts(rows, x, y, only=front_key), key=lambda p: p[0])
    if front:
        ax.plot([p[0] for p in front], [p[1] for p in front], '-', color='crimson', lw=1.2, zorder=0)
        ax.scatter([p[0] for p in front], [p[1] for p in front], s=110, facecolors='none', edgecolors='crimson', lw=1.4,
                   label='Pareto front')
    ax.margins(x=0.2, y=0.08)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, 'no finished points with these figures', ha='center', va='center', transform=ax.transAxes)


def plot(rows: list[dict], out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        console.print('[yellow]note:[/] matplotlib is not installed: no plots (pip install matplotlib)')
        return []
    from flow.sweep.fronts import accuracy_key

    acc = accuracy_key(rows)
    acc_label = {'acc_hw': 'test accuracy (hardware C simulation)', 'acc_reference': 'test accuracy (integer reference)',
                 'acc_reference_test': 'test accuracy (integer reference = hardware, whole test split)',
                 'acc_qkeras': 'test accuracy (QKeras)'}[acc]
    files = []
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    _scatter(ax, rows, 'stored_bits', acc, 'front_bits', 'stored bits (weights + index + scales + biases)', acc_label)
    ax.set_xscale('log')
    ax.set_title('accuracy vs memory')
    fig.tight_layout()
    files.append(out / 'accuracy_vs_bits.png')
    fig.savefig(files[-1], dpi=130)
    plt.close(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.6))
    _scatter(a1, rows, 'multipliers', acc, 'front_mults', 'multipliers (DSPs, estimated)', acc_label)
    a1.set_title('accuracy vs multipliers')
    # the HLS design's LUTs: the estimate's, measured by yosys for the generated kernels' engines where rtl ran
    measured = any(r.get('lut_source') == 'measured' for r in rows)
    _scatter(a2, rows, 'lut', acc, None, 'LUTs of the HLS design (' + ('engines measured by yosys where the rtl '
                                                                     'step ran, else estimated)' if measured else 'estimated)'),
             acc_label)
    a2.set_title('accuracy vs LUTs')
    fig.tight_layout()
    files.append(out / 'accuracy_vs_hardware.png')
    fig.savefig(files[-1], dpi=130)
    plt.close(fig)
    return files
