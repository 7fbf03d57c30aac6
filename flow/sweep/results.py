"""A sweep's results: one row per point with every setting and every figure its build folder holds,
the Pareto fronts marked, written as CSV, JSON (and Parquet when pyarrow is installed), and plots.

Figures, from the reports the flow writes:
- ``train/train.json``: ``acc_qkeras`` (QKeras on the whole test split);
- ``reference/accuracy.json``: ``acc_reference_test``, the integer reference on the whole test split;
- ``reports/verify.json``: ``acc_reference`` and ``acc_hw`` (the C simulation of the hardware) on the
  golden vectors (``n_golden``), and whether each level is exact (``exact_csim``: reference == C
  simulation, ``exact_qkeras``: every layer of QKeras == reference, ``exact_accel``: the AXI-Stream
  testbench, ``exact_rtl``: Verilator on the da4ml RTL, when built);
- ``reference/footprint.json``: ``stored_bits`` (weights + index + scales + biases), its parts,
  ``kept_weights``, ``compression_vs_float32``;
- ``reports/estimate.json``: ``multipliers``, ``bram18``, ``cycles`` (latency), ``interval`` (io_stream),
  hls4ml's dense ``dense_multipliers``, the board's ``lut``/``ff``/``dsp`` used (``lut_source``:
  estimated or measured) and ``fits``;
- ``reports/rtl_resources.json`` (where the rtl step built): ``rtl_lut``/``rtl_ff`` of the fully
  parallel network and ``engine_lut``/``engine_ff``/``engine_dsp`` of the time-multiplexed engines (block-sparse, SST, LSTM), measured by yosys.

Where ``seed`` is an axis, ``setting`` is the point's settings but its seed, and
``summary.csv``/``summary.md`` give each setting's mean and spread over its seeds (flow/sweep/over_seeds.py).

Fronts: ``front_bits`` (max ``acc_hw``, min ``stored_bits``) and ``front_mults`` (max ``acc_hw``, min
``multipliers``), among the points that finished.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from flow.infra.build_dir import write_json
from flow.infra.errors import BadInput
from flow.infra.progress import console, print_table
from flow.sweep.fronts import accuracy_key, num, pareto
from flow.sweep.labels import label
from flow.sweep.over_seeds import write as write_over_seeds
from flow.sweep.status import DONE_CODES

FIRST = ['point', 'label', 'setting', 'method', 'status', 'exit_code', 'error', 'reused', 'seconds']
FIGURES = ['acc_hw', 'acc_reference_test', 'acc_reference', 'acc_qkeras', 'n_golden_vectors', 'stored_bits', 'weight_bits', 'index_bits', 'bias_bits',
           'scale_bits', 'kept_weights', 'compression_vs_float32', 'multipliers', 'dense_multipliers', 'bram18', 'cycles',
           'interval', 'dsp', 'lut', 'lut_source', 'ff', 'fits', 'rtl_lut', 'rtl_ff', 'engine_lut', 'engine_ff', 'engine_dsp',
           'exact_csim', 'exact_qkeras', 'exact_accel', 'exact_rtl', 'front_bits', 'front_mults']


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _flatten(d: dict, prefix: str = '') -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f'{prefix}{k}.'))
        elif v is not None and v != {}:
            out[f'{prefix}{k}'] = json.dumps(v) if isinstance(v, list) else v
    return out


def _method(config: dict) -> str:
    model = str(config.get('model', ''))
    return Path(model.partition('{')[0]).stem if model else ''


def point_row(folder: Path, rec: dict) -> dict:
    """One point's row from its record (point.json) and its build folder."""
    code = rec.get('exit_code')
    status = {0: 'done', 3: 'done (tool missing)', 1: 'failed', 2: 'bad input', 130: 'interrupted', None: 'not run'}.get(code, 'failed')
    axes = rec.get('settings') or {}  # the point's own settings (its sweep axes)
    row = {'point': rec['key'], 'label': rec.get('label', ''), 'method': _method(rec.get('config', {})), 'status': status,
           'exit_code': code, 'error': rec.get('error') or '', 'reused': bool(rec.get('reused')), 'seconds': rec.get('seconds')}
    if 'seed' in axes:  # what the seeds repeat: the point's settings but its seed (over_seeds groups by it)
        row['setting'] = label({k: v for k, v in axes.items() if k != 'seed'})
    row.update({f'model_params.{k}': json.dumps(v) if isinstance(v, list) else v for k, v in rec.get('model_params', {}).items()})
    config = _json(folder / 'config.json')  # the resolved config run_flow ran with (built-in defaults included)
    settings = _flatten(config) if config else _flatten(rec.get('config', {}))
    row.update({k: v for k, v in settings.items() if k not in row})
    row.update(_figures(folder))
    return row


def _figures(folder: Path) -> dict:
    f = {}
    train = _json(folder / 'train' / 'train.json') or {}
    f['acc_qkeras'] = train.get('test_accuracy_qkeras')
    f['acc_reference_test'] = (_json(folder / 'reference' / 'accuracy.json') or {}).get('test_accuracy_reference')
    verify = _json(folder / 'reports' / 'verify.json')
    if verify:
        acc = verify.get('accuracy') or {}
        f['acc_reference'], f['acc_hw'] = acc.get('reference'), acc.get('csim')
        f['n_golden_vectors'] = verify.get('n_vectors')
        f['exact_csim'] = (verify.get('reference_vs_csim') or {}).get('exact')
        f['exact_qkeras'] = (verify.get('qkeras_vs_reference') or {}).get('all_layers_exact')
        tb = verify.get('accelerator_testbench')
        f['exact_accel'] = None if tb is None else str(tb).startswith('PASS')
        rtl = verify.get('rtl') or {}
        if rtl.get('built', 'exact' in rtl) or rtl.get('engines'):  # the network, or the engines alone
            engines = rtl.get('engines') or {}
            f['exact_rtl'] = bool(rtl.get('exact')) and all(e.get('exact', True) for e in engines.values())
    fp = _json(folder / 'reference' / 'footprint.json')
    if fp:
        t = fp['total']
        f.update(stored_bits=t.get('total_bits'), weight_bits=t.get('weight_bits'), index_bits=t.get('index_bits'),
                 bias_bits=t.get('bias_bits'), scale_bits=t.get('scale_bits'), kept_weights=t.get('kept_weights'),
                 compression_vs_float32=t.get('ratio_vs_float32'))
    est = _json(folder / 'reports' / 'estimate.json')
    if est:
        t = est['total']
        ours, dense, fit = t.get('ours', {}), t.get('hls4ml_dense', {}), t.get('fit', {})
        f.update(multipliers=ours.get('multipliers'), dense_multipliers=dense.get('multipliers'), bram18=ours.get('bram18'),
                 cycles=ours.get('cycles'), interval=ours.get('interval', ours.get('cycles')), fits=t.get('fits'),
                 dsp=fit.get('dsp', {}).get('used'), lut=fit.get('lut', {}).get('used'), ff=fit.get('ff', {}).get('used'),
                 lut_source=fit.get('lut', {}).get('source'))
    res = _json(folder / 'reports' / 'rtl_resources.json')
    if res and (res.get('built') or res.get('engines')):
        net = res.get('network') or {}
        if res.get('built'):
            f.update(rtl_lut=net.get('lut'), rtl_ff=net.get('ff'))
        engines = res.get('engines') or {}
        if engines:
            f.update(engine_lut=sum(e.get('lut', 0) for e in engines.values()), engine_ff=sum(e.get('ff', 0) for e in engines.values()),
                     engine_dsp=sum(e.get('dsp', 0) for e in engines.values()))
    return f


def collect(out: Path) -> list[dict]:
    out = Path(out)
    sweep = _json(out / 'sweep.json')
    if not sweep:
        raise BadInput(f'{out} holds no sweep (sweep.json missing); run `build-bitstream sweep SWEEP.yaml --out {out}` first')
    rows = []
    for key in sweep['points']:
        folder = out / 'points' / key
        rec = _json(folder / 'point.json') or {'key': key}
        rows.append(point_row(folder, rec))
    acc = accuracy_key(rows)
    for name, minimize in (('front_bits', 'stored_bits'), ('front_mults', 'multipliers')):
        for r, m in zip(rows, pareto(rows, acc, minimize)):
            r[name] = m
    return rows


def columns(rows: list[dict]) -> list[str]:
    seen = []
    for r in rows:
        seen += [k for k in r if k not in seen]
    lead = [c for c in FIRST if c in seen]
    params = [c for c in seen if c.startswith('model_params.')]
    figures = [c for c in FIGURES if c in seen]
    rest = sorted(c for c in seen if c not in lead + params + figures)
    return lead + params + figures + rest


@dataclass
class SweepResult:
    out: Path
    rows: list[dict]
    files: list[Path]

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r['exit_code'] not in DONE_CODES]


def write(out: Path, plots: bool = True) -> SweepResult:
    """Collect, write results.csv / results.json (/ results.parquet), the plots, and print the table."""
    out = Path(out)
    rows = collect(out)
    cols = columns(rows)
    files = [out / 'results.csv', out / 'results.json']
    with open(out / 'results.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction='ignore')
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c) for c in cols})
    write_json(out / 'results.json', {'accuracy': accuracy_key(rows), 'columns': cols, 'rows': rows})
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({c: [None if r.get(c) is None else str(r[c]) if isinstance(r.get(c), (dict, list)) else r.get(c)
                              for r in rows] for c in cols})
        pq.write_table(table, out / 'results.parquet')
        files.append(out / 'results.parquet')
    except ImportError:
        pass
    except Exception as e:  # mixed types in a column: the CSV and JSON hold everything
        console.print(f'[yellow]note:[/] results.parquet not written ({type(e).__name__}: {e})')
    if plots:
        from flow.sweep.plots import plot

        files += plot(rows, out)
    print_summary(rows)
    files += write_over_seeds(out, rows)
    console.print('results: ' + ', '.join(str(p) for p in files), soft_wrap=True)
    return SweepResult(out, rows, files)


def print_summary(rows: list[dict]) -> None:
    from rich.table import Table

    acc = accuracy_key(rows)
    table = Table(title='sweep results (* on a Pareto front: accuracy vs stored bits / vs multipliers)')
    for c in ('point', 'label', 'status', acc, 'stored_bits', 'multipliers', 'lut', 'cycles', 'front'):
        table.add_column(c, justify='right' if c in (acc, 'stored_bits', 'multipliers', 'lut', 'cycles') else 'left')
    for r in rows:
        a = num(r.get(acc))
        front = ('bits ' if r.get('front_bits') else '') + ('mults' if r.get('front_mults') else '')
        status = r['status'] if not r['error'] else f"{r['status']}: {r['error'][:60]}"
        table.add_row(r['point'][:8], r['label'], status, '' if a is None else f'{a:.4f}', *('' if r.get(k) is None else str(r[k]) for k in (
            'stored_bits', 'multipliers', 'lut', 'cycles')), front.strip())
    print_table(table)
