"""The vendor steps' wiring, with the real tools replaced by tclsh running our recording stubs.

The stand-ins only run the generated scripts under tclsh; they produce no tool output, so the
steps must stop with a clear 'finished but ... is missing' failure and record nothing."""

import json
import shutil
from pathlib import Path

import pytest

from flow.config import FlowConfig
from flow.steps import Context, run_flow, vivado_bitstream
from flow.stages.vendor import ToolFailed

STUBS = Path(__file__).parent / 'tcl' / 'vendor_stubs.tcl'
pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which('tclsh') is None, reason='tclsh not installed')]


def stand_in(bin_dir: Path, name: str, script_arg: int, record: Path):
    """An executable called ``name`` that runs the script given as argument ``script_arg`` under the stubs."""
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / name
    exe.write_text(f'#!/bin/sh\necho "$@" > {record}.args\nenv | grep ^HLS_STEPS= > {record}.env\n'
                   f'exec tclsh {STUBS} {record} "${script_arg}"\n')
    exe.chmod(0o755)


def test_hls_synth_runs_the_generated_script_and_requires_its_report(default_build, tmp_path, monkeypatch):
    root = tmp_path / 'b'
    shutil.copytree(default_build.root, root)
    record = tmp_path / 'hls.rec'
    stand_in(tmp_path / 'bin', 'vitis_hls', 2, record)  # vitis_hls -f build_hls.tcl
    monkeypatch.setenv('PATH', f'{tmp_path / "bin"}:/usr/bin:/bin')
    cfg = FlowConfig.load(None, epochs=15, n_golden=64, hls_cosim=True)
    with pytest.raises(ToolFailed, match=r'Vitis HLS finished but .*sparsenet_axi_prj/solution1/syn/report/sparsenet_axi_csynth\.xml is missing'):
        run_flow(cfg, root, from_step='hls_synth', to_step='hls_synth')
    assert (tmp_path / 'hls.rec.args').read_text().split() == ['-f', 'build_hls.tcl']
    assert (tmp_path / 'hls.rec.env').read_text().strip() == 'HLS_STEPS=csim synth cosim export'
    lines = record.read_text().splitlines()
    assert [l.split()[0] for l in lines if l.endswith('_design') or '_design ' in l] == [
        'csim_design', 'csynth_design', 'cosim_design', 'export_design']
    assert 'hls_synth' not in json.loads((root / 'manifest.json').read_text())['steps']
    assert not (root / 'hls_report').exists()


def test_vivado_step_runs_the_generated_script_and_requires_the_bitstream(default_build, tmp_path, monkeypatch):
    root = tmp_path / 'b'
    shutil.copytree(default_build.root, root)
    record = tmp_path / 'viv.rec'
    stand_in(tmp_path / 'bin', 'vivado', 4, record)  # vivado -mode batch -source build_vivado.tcl
    monkeypatch.setenv('PATH', f'{tmp_path / "bin"}:/usr/bin:/bin')
    from flow.infra.build_dir import BuildDir

    ctx = Context(FlowConfig.load(None, epochs=15, n_golden=64), BuildDir(root))
    ctx.stage = ctx.build.staging('vivado_bitstream', ['bitstream'])
    with pytest.raises(ToolFailed, match=r'Vivado finished but .*/hls/bitstream/sparsenet\.bit is missing'):
        vivado_bitstream(ctx)
    assert (tmp_path / 'viv.rec.args').read_text().split() == ['-mode', 'batch', '-source', 'build_vivado.tcl']
    assert 'create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma:7.1 axi_dma_0' in record.read_text().splitlines()
