"""The rtl step: the network as da4ml RTL, Verilator co-simulation of the golden vectors, yosys.

The whole network is one design (``rtl/network``), pipelined by da4ml into stages of at most the
board's adder levels per stage (``Board.adder_levels_per_stage``: its clock less the register
overhead, over a family's ns per adder level), simulated on every golden vector one sample per
cycle and compared code for code with the reference; yosys measures it whole (LUT, FF with the
pipeline registers) and the logic depth into every stage's register. Every layer is also a design of its own
(``rtl/layers/<layer>``): synthesized for per-layer resources and, on a mismatch, simulated on the
reference's input to that layer to name the first layer and element that differ.
"""

from __future__ import annotations

import importlib.metadata
from functools import partial

import numpy as np

from flow.infra import processes
from flow.infra.boards import ADDER_NS, CELL_NS, REGISTER_NS
from flow.infra.build_dir import write_json
from flow.infra.progress import bar, console, print_table
from flow.rtl import tools
from flow.rtl.engines import rtl_engine
from flow.rtl.logic import NoLogic, layer_comb, network_comb
from flow.rtl.simulate import RTLDesign
from flow.rtl.synth import synthesize, synthesize_files
from flow.runtime.reference import IntegerModel, first_mismatch
from flow.runtime.reference import Mismatch, describe

DESIGN_NOTE = ('da4ml distributed arithmetic: every layer fully parallel (ReuseFactor 1, multiplier-free '
               'shift-and-add), built from the integer reference; the network pipelined by da4ml (latency cutoff '
               'from the board clock), each layer alone combinational')
ENGINE_NOTE = ('each layer\'s time-multiplexed engine at its ReuseFactor, as Verilog from the static structure its HLS kernel '
               'is generated from (block-sparse: flow/rtl/engine.py on the gather schedule; SST: flow/rtl/sst_engine.py; '
               'LSTM: flow/rtl/lstm_engine.py, a sequence per vector), '
               'Verilated on the golden vectors and synthesized alone')
FIT_KEYS = {'lut': 'lut', 'ff': 'ff', 'dsp': 'dsp', 'bram18': 'bram18'}  # our resource -> board capacity field


def versions() -> dict[str, str]:
    return {'da4ml': importlib.metadata.version('da4ml'), 'verilator': importlib.metadata.version('verilator'),
            'yosys': tools.yosys_version()}


def layer_designs(im: IntegerModel, folder, part: str, clock_ns: float, project: str) -> list:
    """(layer, the layer before it (its input type and trace name), its design) for every layer after the input."""
    shapes = {name: v.shape[1:] for name, v in im.trace(np.zeros((1, *im.input.shape), dtype=np.int64)).items()}
    out, prev = [], im.layers[0]
    for layer in im.layers[1:]:
        comb = layer_comb(layer, shapes[prev.name], prev.out_type)
        out.append((layer, prev, RTLDesign(comb, f'{project}_{layer.name}', folder / layer.name, part, clock_ns)))
        prev = layer
    return out


def first_rtl_mismatch(im: IntegerModel, ref_trace: dict, per_layer: list, rtl_out: np.ndarray) -> str:
    """Simulate layer by layer on the reference's own inputs; describe the first difference."""
    for layer, prev, design in per_layer:
        design.write()
        design.compile()
        got = design.run(ref_trace[prev.name], prev.out_type, layer.out_type)
        m = first_mismatch({layer.name: ref_trace[layer.name]}, {layer.name: got})
        if m:
            return describe('reference vs RTL simulation', m)
    m = first_mismatch({'output': list(ref_trace.values())[-1]}, {'output': rtl_out})
    return describe('reference vs RTL simulation (every layer alone is exact; the whole network is not)', m)


def in_parallel(tasks: dict, label: str, workers: int = 2) -> dict:
    """Run ``tasks`` (name -> callable starting a tool through flow.infra.processes) two at a time with a
    progress bar; on a failure or an interrupt start no more and kill the running tools at once."""
    from concurrent.futures import ThreadPoolExecutor, wait

    out = {}
    # the tools start in worker threads: the main thread turns SIGTERM into an interrupt
    with processes.sigterm_interrupts(), bar(label, len(tasks)) as progress, ThreadPoolExecutor(max_workers=workers) as pool:
        task = progress.add_task(label, total=len(tasks), info='')
        jobs = {name: pool.submit(fn) for name, fn in tasks.items()}
        try:
            for name, job in jobs.items():
                progress.update(task, info=name)
                out[name] = job.result()
                progress.advance(task)
        except BaseException:  # interrupted, or one failed: start no more, stop the running ones
            pool.shutdown(wait=False, cancel_futures=True)
            processes.kill_running()
            while wait(list(jobs.values()), timeout=0.1).not_done:  # a worker may have started a tool meanwhile
                processes.kill_running()
            raise
    return out


NETWORK = ' network'  # the pipelined network's task name (no layer's name starts with a space)


def synthesize_layers(per_layer: list, family: str, net=None) -> dict[str, dict]:
    """yosys on every layer's design (and first on the pipelined network ``net``, with the depth into
    each stage's register), two at a time (yosys is single-threaded)."""
    tasks = {NETWORK: partial(synthesize, net.path, net.top, family, tuple(net.registers()))} if net else {}
    tasks.update({layer.name: partial(synthesize, design.path, design.top, family) for layer, _, design in per_layer})
    done = in_parallel(tasks, f'yosys synth_xilinx -family {family}')
    out = {layer.name: {'kind': layer.kind, **done[layer.name], 'da4ml_lut_estimate': design.cost}
           for layer, _, design in per_layer}
    if net:
        out[NETWORK] = done[NETWORK]
    return out


def pipeline_report(net, counts: dict, board) -> dict:
    """The pipelined network's stages: logic depth per stage measured by yosys (the cells into the
    register the stage ends in), da4ml's adder levels per stage estimated, and whether the deepest
    stage is plausible at the board clock (a rule of thumb: no place and route here)."""
    depths = [counts['depth_into'][r] for r in net.registers()]
    budget = board.logic_depth_budget
    return {
        'stages': net.stages,
        'latency_cycles': net.stages + 1,  # inputs registered, then one register per stage (the last: the outputs)
        'interval_cycles': 1,
        'latency_cutoff_adder_levels': board.adder_levels_per_stage,
        'stage_adder_levels_estimated': net.stage_adder_levels,
        'combinational_adder_levels_estimated': net.adder_levels,
        'stage_logic_depth': depths,
        'max_stage_logic_depth': max(depths, default=0),
        'logic_depth_budget': budget,
        'clock_period_ns': board.clock_period_ns,
        'timing_plausible': max(depths, default=0) <= budget,
        'rule': (f'cutoff: floor((clock {board.clock_period_ns:g} ns - {REGISTER_NS:g} ns registers) / '
                 f'{ADDER_NS[board.yosys_family]:g} ns per adder level) = {board.adder_levels_per_stage} da4ml adder levels '
                 f'per stage; plausible: each stage\'s measured logic depth <= floor(({board.clock_period_ns:g} - '
                 f'{REGISTER_NS:g}) ns / {CELL_NS[board.yosys_family]:g} ns per cell) = {budget} cells ({board.yosys_family} '
                 'rules of thumb, flow/infra/boards.py; Vivado timing decides)'),
    }


def engine_layers(im: IntegerModel, plan) -> list:
    """(layer, the layer it reads, its engine at the plan's ReuseFactor) for every layer whose kernel
    runs a time-multiplexed engine (``engines.rtl_engine``; not when hls4ml's DA Dense builds it)."""
    out, by_name, sources = [], {layer.name: layer for layer in im.layers}, im.sources()
    shapes = None
    for layer in im.layers[1:]:
        p, prev = plan[layer.name], by_name[sources[layer.name][0]]  # the layer it reads (a branch's, too)
        if p.reuse_factor is None or p.da:
            continue
        shapes = shapes or {n: v.shape[1:] for n, v in im.trace(np.zeros((1, *im.input.shape), dtype=np.int64)).items()}
        if design := rtl_engine(layer, p.reuse_factor, prev.out_type, shapes[prev.name]):
            out.append((layer, prev, design))
    return out


def simulate_engines(engines: list, ref_trace: dict, folder, project: str) -> dict:
    """Each engine Verilated and run on the reference's input to its layer, all golden vectors back
    to back (a convolution's engine: every output pixel's patch, ``RefLayer.engine_vectors``): its
    output codes must equal the reference's; cycles counted per vector."""
    from flow.rtl.engine_sim import EngineSim
    from flow.runtime.reference import first_mismatch

    out = {}
    for layer, prev, design in engines:
        top = f'{project}_{layer.name}_engine'
        x, want = layer.engine_vectors(ref_trace[prev.name]), ref_trace[layer.name]
        sim = EngineSim(design.verilog(top), top, folder / layer.name, x.shape[1], prev.out_type, want.size // len(x),
                        layer.out_type, design.cycles)
        with console.status(f'Verilator: building the time-multiplexed engine of {layer.name}'):
            sim.compile()
        run = sim.run(x)
        m = first_mismatch({layer.name: want}, {layer.name: run.codes.reshape(want.shape)})
        if m:
            raise Mismatch(describe(f'reference vs RTL engine ({design.organisation}, RF {design.rf}) simulation', m,
                                    layers=[layer]))
        out[layer.name] = {'source': sim.source, 'top': top, **design.facts(),
                           'cycles_per_sample': run.cycles_per_sample, 'latency': run.latency}
    return out


def fit(measured: dict, board) -> dict:
    cap = board.resources
    return {k: {'used': measured[k], 'available': getattr(cap, f), 'margin': getattr(cap, f) - measured[k]}
            for k, f in FIT_KEYS.items()}


def not_built(ctx, reason: str, engines: dict | None = None, n_vectors: int = 0) -> dict:
    """Record why there is no RTL network (in verify.json too), so nobody reads its absence as a pass;
    with the time-multiplexed ``engines`` that were built all the same (Verilated exact on
    ``n_vectors`` golden vectors, synthesized)."""
    report = {'built': False, 'reason': reason}
    if engines:
        report.update({'engines': engines, 'engine_design': ENGINE_NOTE})
    write_json(ctx.stage / 'reports' / 'rtl_resources.json', report)
    level = {'built': False, 'reason': reason, **(engine_level(engines, n_vectors) if engines else {})}
    ctx.build.amend_json('verify', 'reports/verify.json', {'rtl': level})
    console.print(f'[yellow]RTL network not built[/]: {reason}', soft_wrap=True)
    if engines:
        _print_engines(report, console)
        console.print(f'[bold green]bit-exact[/]: reference == RTL engine simulation (Verilator) of {", ".join(engines)} '
                      f'on {n_vectors} vectors')
    return report


def engine_level(engines: dict, n_vectors: int) -> dict:
    """verify.json's record of the engines' simulation (each raised on a mismatch: here all exact)."""
    return {'equal_vectors': int(n_vectors), 'exact': True,
            'engines': {n: {'exact': True, 'organisation': e['organisation'], 'reuse_factor': e['reuse_factor'],
                            'cycles_per_sample': e['cycles_per_sample']} for n, e in engines.items()}}


def build_engines(ctx, im: IntegerModel, ref_trace: dict, folder, family: str, listed: list | None = None) -> dict:
    """Every time-multiplexed engine of the network (``listed``: ``engine_layers``' answer, when the
    caller has it): Verilated exact on the golden vectors, then synthesized."""
    listed = engine_layers(im, ctx.plan()) if listed is None else listed
    engines = simulate_engines(listed, ref_trace, folder / 'engines', ctx.config.project_name)
    if engines:
        tasks = {name: partial(synthesize_files, [e.pop('source')], e.pop('top'), family, folder / 'engines' / name / 'synth')
                 for name, e in engines.items()}
        for name, counts in in_parallel(tasks, f'yosys synth_xilinx -family {family}: time-multiplexed engines').items():
            engines[name].update(counts)
    return engines


def build_rtl(ctx, no_network: str | None = None, engines: list | None = None) -> dict:
    """The network and its engines; ``no_network``: why the network is not built (its engines are);
    ``engines``: ``engine_layers``' answer, when the caller has it."""
    cfg, root, board = ctx.config, ctx.root, ctx.board()
    im = ctx.reference()
    x_codes = np.load(root / 'golden' / 'input_codes.npy')
    ref_trace = im.trace(x_codes)
    ref_out = list(ref_trace.values())[-1]
    folder = ctx.stage / 'rtl'
    try:
        if no_network:
            raise NoLogic(no_network)
        net_comb = network_comb(im)
        per_layer = layer_designs(im, folder / 'layers', board.part, board.clock_period_ns, cfg.project_name)
    except NoLogic as e:  # no da4ml network: the engines (a CNN's convolutions, SST layers too) are built all the same
        return not_built(ctx, str(e), build_engines(ctx, im, ref_trace, folder, board.yosys_family, engines), len(x_codes))

    net = RTLDesign(net_comb, cfg.project_name, folder / 'network', board.part, board.clock_period_ns,
                    latency_cutoff=board.adder_levels_per_stage)
    with console.status(f'Verilator: building the network\'s simulation ({net.stages} pipeline stages)'):
        net.write()
        net.compile()
    rtl_out = net.run(x_codes, im.in_type, im.out_type)
    if not np.array_equal(rtl_out, ref_out):
        raise Mismatch(first_rtl_mismatch(im, ref_trace, per_layer, rtl_out))

    family = board.yosys_family
    engines = build_engines(ctx, im, ref_trace, folder, family, engines)
    for _, _, design in per_layer:
        design.write()
    layers = synthesize_layers(per_layer, family, net)
    net_counts = layers.pop(NETWORK)
    network = {k: v for k, v in net_counts.items() if k != 'depth_into'}
    network['da4ml_lut_estimate'] = net.cost
    pipeline = pipeline_report(net, net_counts, board)

    report = {
        'built': True, 'design': DESIGN_NOTE, 'board': board.name, 'part': board.part, 'family': family,
        'tools': versions(), 'layers': layers, 'network': network, 'pipeline': pipeline, 'fit': fit(network, board),
        'engines': engines, 'engine_design': ENGINE_NOTE,
        'note': 'measured by yosys synth_xilinx (no place and route): the network row is the pipelined network '
                'synthesized whole (FF: its pipeline registers), its logic_depth the deepest stage; each layer row is '
                'that layer alone and combinational (its logic_depth: the layer in one cycle). logic_depth is the '
                'longest register-to-register (or port) path in cells, a first timing indication. Estimated, not '
                'measured: da4ml_lut_estimate, the adder levels, and the clock rules behind the cutoff and '
                'timing_plausible',
    }
    # fits: the resources, and a deepest stage plausible at the board clock
    report['fits'] = all(v['margin'] >= 0 for v in report['fit'].values()) and pipeline['timing_plausible']
    write_json(ctx.stage / 'reports' / 'rtl_resources.json', report)
    level = {**engine_level(engines, len(x_codes)), 'simulator': f'Verilator {report["tools"]["verilator"]}', 'design': DESIGN_NOTE}
    ctx.build.amend_json('verify', 'reports/verify.json', {'rtl': level})
    print_resources(report)
    console.print(f'[bold green]bit-exact[/]: reference == RTL simulation (Verilator) on {len(x_codes)} vectors')
    return {'built': True, 'exact_vectors': int(len(x_codes)), **{k: network[k] for k in ('lut', 'ff', 'dsp', 'logic_depth')},
            'stages': pipeline['stages']}


def print_resources(report: dict, out=None) -> None:
    from rich.table import Table

    out = out or console
    t = Table(title=f'RTL resources, measured: yosys synth_xilinx -family {report["family"]}', caption=report['design'])
    cols = ('lut', 'ff', 'carry', 'dsp', 'bram18', 'logic_depth', 'da4ml_lut_estimate')
    t.add_column('layer')
    t.add_column('kind')
    for c in cols:
        t.add_column(c.replace('_', ' '), justify='right')
    for name, row in report['layers'].items():
        t.add_row(name, row['kind'], *(f'{row[c]:g}' for c in cols))
    pipe = report.get('pipeline')  # absent in reports written before the network was pipelined
    t.add_row(f'NETWORK, {pipe["stages"]} stages' if pipe else 'NETWORK', '',
              *(f'{report["network"][c]:g}' for c in cols), style='bold')
    print_table(t, out)
    verdict = '[green]fits[/]' if report['fits'] else '[red]does not fit[/]'
    margins = ', '.join(f"{k}: {v['used']}/{v['available']}" for k, v in report['fit'].items())
    if not pipe:
        out.print(f'{report["board"]} ({report["part"]}), fully parallel combinational RTL, measured: {verdict} — {margins}; '
                  f'logic depth {report["network"]["logic_depth"]} (rerun the rtl step for the pipelined design)', soft_wrap=True)
        _print_engines(report, out)
        return
    out.print(f'{report["board"]} ({report["part"]}), fully parallel RTL pipelined in {pipe["stages"]} stages '
              f'(latency {pipe["latency_cycles"]} cycles, a sample every cycle), measured: {verdict} — {margins}; '
              f'logic depth per stage (yosys) {pipe["stage_logic_depth"]}, deepest {pipe["max_stage_logic_depth"]} '
              f'vs {pipe["logic_depth_budget"]} plausible at {1000 / pipe["clock_period_ns"]:g} MHz '
              f'({"yes" if pipe["timing_plausible"] else "no"}; estimated rule, no place and route)', soft_wrap=True)
    _print_engines(report, out)


def _print_engines(report: dict, out) -> None:
    from rich.table import Table

    if report.get('engines'):
        t = Table(title='Time-multiplexed engines (the HLS template\'s architecture), measured', caption=report['engine_design'])
        cols = ('organisation', 'reuse_factor', 'multipliers', 'padding', 'cycles_per_sample', 'lut', 'ff', 'carry', 'dsp',
                'bram18', 'logic_depth')
        t.add_column('layer')
        for c in (*cols, 'estimate LUT', 'estimate FF'):
            t.add_column(c.replace('_', ' '), justify='right')
        for name, e in report['engines'].items():
            est = e.get('estimate') or {}  # an LSTM's state update has no logic estimate: measured only
            t.add_row(name, *(f'{e[c]:g}' if not isinstance(e[c], str) else e[c] for c in cols),
                      str(est.get('lut', '—')), str(est.get('ff', '—')))
        print_table(t, out)
