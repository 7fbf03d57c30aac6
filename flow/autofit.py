"""``build-bitstream autofit``: the ReuseFactor per layer that fits a board at the lowest interval.

Works on a build folder whose reference and plan exist (after the ``plan`` step), on the estimate
alone: no training, no tool. Starting from every layer at its fastest ReuseFactor, it raises the
ReuseFactor of the layer with the most multipliers, one valid value at a time (``RefLayer.reuse_factors``:
the values the kind can be built with), until the estimate says the design fits the board's
DSPs, BRAM18 (and the LUT/FF it estimates); the result is printed as a config to pass back with
``--config``. A greedy search on an estimate: the first csynth report is what confirms it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from flow.plan import Plan
from flow.runtime.reference import IntegerModel
from flow.stages.estimate import estimate_model

MAX_STEPS = 10_000


def candidates(layer, strategy: str | None) -> list[int]:
    """The ReuseFactors worth trying: every valid one for short lists (hls4ml's Resource Dense), else
    the powers of two among them and the largest (one cycle per kept weight)."""
    valid = list(layer.reuse_factors(strategy).values)
    if len(valid) <= 64:
        return valid
    return sorted({v for v in valid if v & (v - 1) == 0} | {valid[-1]})


def interval(est: dict) -> int:
    tot = est['total']['ours']
    return tot.get('interval', tot['cycles'])


def autofit(im: IntegerModel, plan: Plan, board) -> tuple[Plan, dict, list[str]]:
    """(the fitted plan, its estimate, the steps taken). Layers built with distributed arithmetic
    (ReuseFactor 1 by definition) and layers without a ReuseFactor keep theirs."""
    layers = {layer.name: layer for layer in im.layers}
    tunable = {n: candidates(layers[n], p.strategy) for n, p in plan.layers.items() if p.reuse_factor is not None and not p.da}
    current = dict.fromkeys(tunable, 0)  # index into each layer's candidates: the fastest first

    def planned():
        return dataclasses.replace(plan, layers={n: dataclasses.replace(p, reuse_factor=tunable[n][current[n]])
                                                 if n in tunable else p for n, p in plan.layers.items()})

    log = []
    for _ in range(MAX_STEPS):
        p = planned()
        est = estimate_model(im, p, board)
        if est['total']['fits']:
            return p, est, log
        # the layer that uses the most multipliers and can still go slower
        movable = [n for n in tunable if current[n] + 1 < len(tunable[n])]
        if not movable:
            return p, est, log + ['every layer is at its largest ReuseFactor and the design still does not fit']
        name = max(movable, key=lambda n: est['layers'][n]['ours']['multipliers'] if n in est['layers'] else 0)
        current[name] += 1
        log.append(f'{name}: ReuseFactor {tunable[name][current[name] - 1]} -> {tunable[name][current[name]]}')
    raise RuntimeError('autofit did not converge')


def config_yaml(plan: Plan) -> str:
    """The per-layer ReuseFactors as a config snippet (``--config``)."""
    rows = [f'  {n}: {{reuse_factor: {p.reuse_factor}}}' for n, p in plan.layers.items() if p.reuse_factor is not None]
    return 'layers:\n' + '\n'.join(rows) + '\n'


def run(build_dir: Path, board_name: str | None, write: Path | None, console) -> int:
    from flow.infra.boards import get_board
    from flow.infra.errors import BadInput
    from flow.stages.estimate import print_estimate

    build_dir = Path(build_dir)
    if not (build_dir / 'plan' / 'plan.json').is_file():
        raise BadInput(f'{build_dir} has no plan: run build-bitstream --build-dir {build_dir} --to-step plan first')
    im, plan = IntegerModel.load(build_dir / 'reference'), Plan.load(build_dir / 'plan')
    board = get_board(board_name or json.loads((build_dir / 'config.json').read_text())['board'])
    fitted, est, log = autofit(im, plan, board)
    for line in log:
        console.print(f'[dim]{line}[/]')
    print_estimate(est, console)
    text = config_yaml(fitted)
    if est['total']['fits']:
        console.print(f'[green]fits {board.name}[/] at an interval of {interval(est)} cycles; the config:')
    else:
        console.print(f'[red]does not fit {board.name}[/] even at the largest ReuseFactors; the closest config:')
    console.print(text, highlight=False, markup=False)
    if write is not None:
        Path(write).write_text(text)
        console.print(f'written to {write}; pass it back with --config {write}')
    return 0 if est['total']['fits'] else 1
