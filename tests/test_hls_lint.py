"""The HLS lint (flow/stages/hls_lint.py): every rule fires, at the line that holds the pattern, on our
templates as they were before they were rewritten with static structure (kept as fixtures in
tests/fixtures/hls_lint/before_static/, copied into an hls4ml-shaped project); nothing fires on a
clean hand-written layer, and one mutation per rule makes that rule fire on the clean layer."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flow.stages.accel import fill
from flow.stages.hls_lint import RULES, lint_project, print_findings

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / 'fixtures' / 'hls_lint'
TEMPLATES = FIXTURES / 'before_static'  # the templates before issue 20's rewrite
ACCEL_DIR = TEMPLATES
OURS = ['nnet_block_sparse_dense.h', 'nnet_sst_dense.h', 'nnet_block_sparse_lstm.h', 'nnet_stream_vector.h']


def line_of(path: Path, pattern: str, nth: int = 0) -> int:
    """1-based line of the nth line of path that contains pattern (a plain substring)."""
    hits = [i for i, text in enumerate(path.read_text().splitlines(), 1) if pattern in text]
    assert len(hits) > nth, f'{pattern!r} not in {path.name}: the template changed, update the test'
    return hits[nth]


def at(findings, rule, path: Path, line: int):
    return [f for f in findings if f.rule == rule and Path(f.file).name == path.name and f.line == line]


@pytest.fixture(scope='module')
def templates_project(tmp_path_factory):
    """Our templates before the rewrite, in an hls4ml-shaped project, with the accelerator top."""
    hls = tmp_path_factory.mktemp('lint_templates') / 'hls'
    shutil.copytree(FIXTURES / 'templates', hls)
    for name in OURS:
        shutil.copy(TEMPLATES / name, hls / 'firmware' / 'nnet_utils' / name)
    values = {'PROJECT': 'myproject', 'TOP': 'myproject_axi'}
    (hls / 'firmware' / 'myproject_axi.cpp').write_text(fill(ACCEL_DIR / 'axi_top.cpp.in', values))
    return hls


@pytest.fixture(scope='module')
def template_findings(templates_project):
    return lint_project(templates_project)


def fw(hls, name):
    return hls / 'firmware' / 'nnet_utils' / name


# ---------------------------------------------------------------- the templates before the rewrite


def test_table_indexed_writes_in_the_current_templates(templates_project, template_findings):
    bsd, sst, lstm = (fw(templates_project, n) for n in OURS[:3])
    acc = line_of(bsd, 'acc[cb * bo + j] +=')
    z = line_of(lstm, 'z[g * units + col + j] +=')
    sum_o = line_of(sst, 'sum[o] += part')
    for path, line, why in ((bsd, acc, 'seg_block'), (lstm, z, 'index'), (sst, sum_o, 'changes every cycle')):
        got = at(template_findings, 'table-index', path, line)
        assert got, f'no table-index at {path.name}:{line}'
        assert why in got[0].message


def test_table_indexed_reads_of_partitioned_arrays_report_the_mux(templates_project, template_findings):
    bsd, sst, lstm = (fw(templates_project, n) for n in OURS[:3])
    data_in = at(template_findings, 'table-index', bsd, line_of(bsd, 'const data_T x = data[in];'))
    assert data_in and 'run_start' in data_in[0].message and '64-input mux' in data_in[0].message  # n_in
    for pattern in ('data[base + p - 1]', 'data[base - p - 1]'):
        got = at(template_findings, 'table-index', sst, line_of(sst, pattern))
        assert got and 'pattern[' in got[0].message and '784-input mux' in got[0].message
    # the LSTM passes a slice of its completely partitioned input at the step's offset
    off = at(template_findings, 'table-index', lstm, line_of(lstm, '&data[s * CONFIG_T::n_in]'))
    assert off and f'{49 * 40} elements' in off[0].message


def test_rom_reads_per_cycle_over_two_ports(templates_project, template_findings):
    sst, lstm = fw(templates_project, OURS[1]), fw(templates_project, OURS[2])
    pattern = at(template_findings, 'rom-ports', sst, line_of(sst, 'pattern[code * CONFIG_T::nonzeros + k]'))
    assert pattern and '256 reads of `pattern`' in pattern[0].message  # n_dec 128 x K 2, unpartitioned
    w = at(template_findings, 'rom-ports', lstm, line_of(lstm, 'w[((g * n_kept + k) * bi + i) * bo + j]'))
    assert w and '64 reads of `w`' in w[0].message  # n_lanes 4 x 4 gates x 2 x 2
    index = at(template_findings, 'rom-ports', lstm, line_of(lstm, 'const unsigned col = (unsigned)index[k]'))
    assert index and '4 reads of `index`' in index[0].message
    # the block-sparse dense ROMs are reshaped to one word per cycle: no finding
    bsd = fw(templates_project, OURS[0])
    assert not [f for f in template_findings if f.rule == 'rom-ports' and Path(f.file).name == bsd.name]


def test_dividers_by_non_powers_of_two(templates_project, template_findings):
    sst, lstm = fw(templates_project, OURS[1]), fw(templates_project, OURS[2])
    for pattern in ('w / CONFIG_T::n_groups', 'w % CONFIG_T::n_groups'):
        got = at(template_findings, 'divider', sst, line_of(sst, pattern))
        assert got and 'by 98' in got[0].message and '128 instances' in got[0].message
    assert at(template_findings, 'divider', lstm, line_of(lstm, '(k / kept_per_row) * bi'))  # kept_per_row 3
    # run_len = seg_len = 8: shifts, no divider
    bsd = fw(templates_project, OURS[0])
    assert not [f for f in template_findings if f.rule == 'divider' and Path(f.file).name == bsd.name]


def test_accelerator_top_partitions_x_unlike_the_hls4ml_top(templates_project, template_findings):
    axi = templates_project / 'firmware' / 'myproject_axi.cpp'
    line = line_of(axi, '#pragma HLS ARRAY_PARTITION variable=x complete')
    assert line == line_of(ACCEL_DIR / 'axi_top.cpp.in', '#pragma HLS ARRAY_PARTITION variable=x complete')
    got = at(template_findings, 'partition-mismatch', axi, line)
    assert got and 'ARRAY_RESHAPE complete' in got[0].message and 'myproject.cpp:13' in got[0].message
    # y is partitioned the same way on both sides
    assert not at(template_findings, 'partition-mismatch', axi, line + 1)


def test_a_pipelined_top_over_our_reuse_loops(templates_project, tmp_path):
    hls = tmp_path / 'hls'
    shutil.copytree(templates_project, hls)
    top = hls / 'firmware' / 'myproject.cpp'
    top.write_text(top.read_text().replace('#pragma HLS DATAFLOW', '#pragma HLS PIPELINE'))
    findings = lint_project(hls)
    got = at(findings, 'top-pipeline', top, line_of(top, '#pragma HLS PIPELINE'))
    assert got and 'PipelineStyle: dataflow' in got[0].message
    for name in OURS[:3]:
        assert f'{name}:' in got[0].message  # each ReuseLoop it unrolls is named
    assert not [f for f in lint_project(templates_project) if f.rule == 'top-pipeline']


def test_every_rule_fires_on_the_current_templates_and_only_in_our_files(templates_project, template_findings):
    assert {f.rule for f in template_findings} == set(RULES) - {'top-pipeline'}
    scope = {'nnet_block_sparse_dense.h', 'nnet_sst_dense.h', 'nnet_block_sparse_lstm.h', 'myproject_axi.cpp'}
    assert {Path(f.file).name for f in template_findings} <= scope


# ---------------------------------------------------------------- clean code and mutations


@pytest.fixture
def clean(tmp_path):
    hls = tmp_path / 'hls'
    shutil.copytree(FIXTURES / 'clean', hls)
    return hls


def test_clean_layer_has_no_findings(clean):
    assert lint_project(clean) == []


LAYER = 'firmware/nnet_utils/nnet_clean_dense.h'
MUTATIONS = {
    # a table read at the cycle counter chooses the written output
    'table-index': (LAYER, 'const unsigned o = clean_lane_out[l];', 'const unsigned o = clean_lane_out[t];',
                    'acc[o] +='),
    # the partitioned input read at a table-chosen index
    'table-index-read': (LAYER, 'acc[7] += data[l + half];', 'acc[7] += data[clean_lane_out[t] + l];',
                         'acc[7] += data['),
    # the weight ROM no longer reshaped: n_lanes reads of one BRAM per cycle
    'rom-ports': (LAYER, '#pragma HLS ARRAY_RESHAPE variable=weights block factor=CONFIG_T::n_lanes', '',
                  'weights[l * rf + t]'),
    'divider': (LAYER, 'const unsigned half = t / 2;', 'const unsigned half = t / 3;', 't / 3'),
    'partition-mismatch': ('firmware/myproject.cpp', '#pragma HLS ARRAY_PARTITION variable=x_in complete dim=0',
                           '#pragma HLS ARRAY_RESHAPE variable=x_in complete dim=0', None),
    'top-pipeline': ('firmware/myproject.cpp', '#pragma HLS DATAFLOW', '#pragma HLS PIPELINE', '#pragma HLS PIPELINE'),
}


@pytest.mark.parametrize('name', sorted(MUTATIONS))
def test_each_mutation_makes_its_rule_fire(clean, name):
    rel, old, new, marker = MUTATIONS[name]
    path = clean / rel
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    rule = name.split('-read')[0]
    findings = lint_project(clean)
    assert findings, f'{name}: nothing fired'
    assert {f.rule for f in findings} == {rule}, findings
    if name == 'partition-mismatch':  # reported at the caller's pragma
        axi = clean / 'firmware' / 'myproject_axi.cpp'
        assert [f.line for f in findings] == [line_of(axi, 'variable=x complete')]
    else:
        assert line_of(path, marker) in [f.line for f in findings]


def test_rom_ports_counts_words_of_a_partial_reshape(clean):
    """factor 2 instead of n_lanes: the 4 lanes' reads fall in 2 words of the reshaped ROM
    (block reshape: element i in word i % depth), still 2 ports; cyclic 2 puts them in 4."""
    path = clean / LAYER
    text = path.read_text()
    path.write_text(text.replace('block factor=CONFIG_T::n_lanes', 'block factor=2'))
    assert lint_project(clean) == []
    path.write_text(text.replace('block factor=CONFIG_T::n_lanes', 'cyclic factor=2'))
    (f,) = lint_project(clean)
    assert f.rule == 'rom-ports' and f.message.split(': ')[1].startswith('4 reads of `weights`')


# ---------------------------------------------------------------- interfaces


def test_cli_exit_codes_and_output(clean, templates_project):
    env_py = [sys.executable, '-m', 'flow.stages.hls_lint']
    ok = subprocess.run([*env_py, str(clean)], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run([*env_py, str(templates_project)], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1
    assert re.search(r'nnet_sst_dense\.h:\d+: \[rom-ports\]', bad.stdout)


def test_print_findings(template_findings, templates_project):
    from rich.console import Console

    console = Console(record=True, width=200)
    print_findings(template_findings, console, templates_project)
    text = console.export_text()
    assert 'HLS lint:' in text and 'firmware/nnet_utils/nnet_sst_dense.h' in text
    console = Console(record=True)
    print_findings([], console)
    assert 'no findings' in console.export_text()


@pytest.mark.slow
def test_a_converted_sst_project(tmp_path):
    """The real conversion (hls4ml's generated top, parameters.h, weights) of a small all-Latency SST
    model is lint-clean: the plan makes its top a DATAFLOW region. The PIPELINE hls4ml would put
    there on its own (PipelineStyle auto) unrolls the generated kernel's ReuseLoop: rule 3 says so."""
    from test_sst import sst_model

    from flow.config import FlowConfig
    from flow.export import to_integer_model
    from flow.infra.boards import get_board
    from flow.runtime.fixed import FixedType
    from flow.stages.convert import convert_model

    model = sst_model()
    cfg = FlowConfig.load(None, model='user.h5', layers={'sst0': {'reuse_factor': 3}})
    convert_model(model, to_integer_model(model, FixedType(6, 2)), cfg, get_board('pynq-z2'), tmp_path / 'hls')
    assert lint_project(tmp_path / 'hls') == []
    top = tmp_path / 'hls' / 'firmware' / f'{cfg.project_name}.cpp'
    top.write_text(top.read_text().replace('#pragma HLS DATAFLOW', '#pragma HLS PIPELINE'))
    got = at(lint_project(tmp_path / 'hls'), 'top-pipeline', top, line_of(top, '#pragma HLS PIPELINE'))
    assert got and '3 iterations' in got[0].message


# ---------------------------------------------------------------- the build step


def test_the_default_build_is_lint_clean_and_a_bad_pattern_fails_the_step(default_build, tmp_path):
    """The hls_lint step runs after convert: the default model's generated C++ has no finding; a copy
    of its project whose generated kernel lost the weight ROM's reshape (every multiplier's word read
    from one two-port memory each cycle) fails the step, naming the file and line."""
    import json

    from flow.config import FlowConfig
    from flow.infra.build_dir import BuildDir
    from flow.steps import Context, HLSLintFailed, hls_lint

    report = json.loads((default_build.root / 'reports' / 'hls_lint.json').read_text())
    assert report['findings'] == []
    root = tmp_path / 'b'
    shutil.copytree(default_build.root, root)
    code = root / 'hls' / 'firmware' / 'nnet_utils' / 'nnet_code_gen.h'
    text = code.read_text()
    assert '#pragma HLS ARRAY_RESHAPE variable=weights' in text
    code.write_text(re.sub(r'.*#pragma HLS ARRAY_RESHAPE variable=weights.*\n', '', text))
    # the step itself (run_flow would first refuse the edited project as a corrupt build folder)
    ctx = Context(FlowConfig.load(None), BuildDir(root), stage=tmp_path / 'stage')
    (ctx.stage / 'reports').mkdir(parents=True)
    with pytest.raises(HLSLintFailed, match=r'rom-ports at firmware/nnet_utils/nnet_code_gen.h:\d+'):
        hls_lint(ctx)
