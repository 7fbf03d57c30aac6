"""The generated Vitis HLS and Vivado scripts, run under tclsh with recording stubs, per board."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from flow.stages.accel import ACCEL_DIR, SHIM_DIR
from flow.infra.boards import all_boards, get_board
from flow.runtime.fixed import FixedType
from flow.runtime.stream import StreamFormat
from flow.stages.scripts import ip_vlnv, write_scripts

STUBS = Path(__file__).parent / 'tcl' / 'vendor_stubs.tcl'
FMT = StreamFormat(64, 10, FixedType(6, 2), FixedType(16, 7))
pytestmark = pytest.mark.skipif(shutil.which('tclsh') is None, reason='tclsh not installed (apt-get install tcl)')


def run_stubbed(script, env=None):
    """Run a generated script under the stubs: the process and the recorded commands."""
    rec = script.with_suffix('.rec')
    res = subprocess.run(['tclsh', str(STUBS), str(rec), str(script)], capture_output=True, text=True,
                         env={'PATH': os.environ['PATH'], **(env or {})})
    return res, rec.read_text().splitlines()


def record(tmp_path, board_name, clock_ns=None, env=None):
    board = get_board(board_name)
    hls, vivado = write_scripts(tmp_path, 'sparsenet', board, FMT, clock_ns or board.clock_period_ns)
    out = {}
    for script in (hls, vivado):
        res, lines = run_stubbed(script, env)
        assert res.returncode == 0, res.stderr
        assert not [l for l in lines if l.startswith('UNKNOWN')], 'script uses commands the stubs do not know'
        assert lines[-1] == 'exit 0'
        out[script.stem] = lines
    return board, out['build_hls'], out['build_vivado']


def has(lines, pattern):
    return any(re.search(pattern, l) for l in lines)


@pytest.mark.parametrize('board_name', sorted(all_boards()))
def test_vitis_hls_script(tmp_path, board_name):
    board, hls, _ = record(tmp_path, board_name)
    assert has(hls, r'^open_project -reset sparsenet_axi_prj$')
    assert has(hls, r'^set_top sparsenet_axi$')
    assert has(hls, rf'^set_part {re.escape(board.part)}$')
    assert has(hls, rf'^create_clock -period {board.clock_period_ns:g} -name default$')
    # C++14 everywhere; the testbench gets the golden folder as its argument, no quoted -D to lose in a shell
    assert [l.split(' -cflags ')[1] for l in hls if ' -cflags ' in l] == [f'-std=c++14 -I{tmp_path}/firmware'] * 3
    assert has(hls, r'^add_files -tb .*/sparsenet_axi_tb\.cpp -cflags ')
    assert f'csim_design -argv {tmp_path.parent}/golden' in hls
    order = [l.split()[0] for l in hls if l.split()[0] in ('csim_design', 'csynth_design', 'cosim_design', 'export_design')]
    assert order == ['csim_design', 'csynth_design', 'export_design']  # cosim only when asked for
    vendor, library, name, version = ip_vlnv('sparsenet').split(':')
    assert has(hls, rf'^config_export -format ip_catalog -vendor {vendor} -library {library} -version {version} -ipname {name}$')


@pytest.mark.parametrize('board_name', sorted(all_boards()))
def test_vivado_block_design(tmp_path, board_name):
    board, _, viv = record(tmp_path, board_name)
    ps = 'processing_system7_0' if board.ps == 'processing_system7' else 'zynq_ultra_ps_e_0'
    master, hp, clk, base = {
        'processing_system7': ('M_AXI_GP0', 'S_AXI_HP0', 'FCLK_CLK0', '0x40400000'),
        'zynq_ultra_ps_e': ('M_AXI_HPM0_FPD', 'S_AXI_HP0_FPD', 'pl_clk0', '0xA0000000'),
    }[board.ps]
    assert has(viv, rf'^create_project -force sparsenet_vivado .* -part {re.escape(board.part)}$')
    # the board part only once Vivado is known to have its files
    check, use = f'get_board_parts -quiet {board.board_part}', f'set_property board_part {board.board_part} stub_project'
    assert viv.index(check) < viv.index(use)
    assert has(viv, rf'^create_bd_cell -type ip -vlnv xilinx\.com:ip:{board.ps}:[\d.]+ {ps}$')
    if board.ps == 'processing_system7':
        assert has(viv, rf'CONFIG\.PCW_USE_S_AXI_HP0 1 CONFIG\.PCW_S_AXI_HP0_DATA_WIDTH {board.hp_port_width} '
                        rf'CONFIG\.PCW_FPGA0_PERIPHERAL_FREQMHZ {board.pl_clock_mhz:g}')
    else:
        assert has(viv, rf'CONFIG\.PSU__USE__S_AXI_GP2 1 CONFIG\.PSU__SAXIGP2__DATA_WIDTH {board.hp_port_width} ')
        assert has(viv, rf'CONFIG\.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ {board.pl_clock_mhz:g} ')
    # DMA: simple mode, 64-bit streams, memory side as wide as the HP port
    assert has(viv, r'^create_bd_cell -type ip -vlnv xilinx\.com:ip:axi_dma:7\.1 axi_dma_0$')
    assert has(viv, rf'CONFIG\.c_include_sg 0 .*CONFIG\.c_m_axi_mm2s_data_width {board.hp_port_width} '
                    rf'CONFIG\.c_m_axis_mm2s_tdata_width {FMT.word_bits} .*CONFIG\.c_s_axis_s2mm_tdata_width {FMT.word_bits} ')
    # the accelerator, by the VLNV the HLS script exports, between the two DMA streams
    assert has(viv, rf'^create_bd_cell -type ip -vlnv {ip_vlnv("sparsenet")} sparsenet_axi_0$')
    assert 'connect_bd_intf_net axi_dma_0/M_AXIS_MM2S sparsenet_axi_0/in_stream' in viv
    assert 'connect_bd_intf_net sparsenet_axi_0/out_stream axi_dma_0/S_AXIS_S2MM' in viv
    assert has(viv, rf'bd_rule:axi4 -config Master "/{ps}/{master}" Clk "/{ps}/{clk}" axi_dma_0/S_AXI_LITE$')
    for port in ('M_AXI_MM2S', 'M_AXI_S2MM'):
        assert has(viv, rf'bd_rule:axi4 -config Slave "/{ps}/{hp}" Clk "/{ps}/{clk}" axi_dma_0/{port}$')
    assert has(viv, rf'bd_rule:clkrst -config Clk "/{ps}/{clk}" sparsenet_axi_0/ap_clk$')
    # address map
    assert f'set_property offset {base} {ps}/Data/SEG_axi_dma_0_Reg' in viv
    assert f'set_property range 64K {ps}/Data/SEG_axi_dma_0_Reg' in viv
    # order of the build: validate before synthesis, bitstream and .hwh copied out last
    steps = [l for l in viv if l.split()[0] in ('validate_bd_design', 'launch_runs', 'file')]
    assert steps[0] == 'validate_bd_design'
    assert 'launch_runs impl_1 -to_step write_bitstream -jobs 4' in steps
    assert has(viv, r'^file copy -force .*/sparsenet_wrapper\.bit .*/bitstream/sparsenet\.bit$')
    assert has(viv, r'^file copy -force .*hw_handoff/sparsenet\.hwh .*/bitstream/sparsenet\.hwh$')
    assert has(viv, r'^set_property board_connections ') == (board.name == 'kv260')


def test_stream_port_names_match_the_cpp_top():
    cpp = (ACCEL_DIR / 'axi_top.cpp.in').read_text()
    assert '#pragma HLS INTERFACE axis port=in_stream' in cpp and '#pragma HLS INTERFACE axis port=out_stream' in cpp
    assert '#pragma HLS INTERFACE ap_ctrl_none port=return' in cpp


def test_clock_from_config(tmp_path):
    _, hls, _ = record(tmp_path, 'Pynq-Z2', clock_ns=5)
    assert has(hls, r'^create_clock -period 5 -name default$')


def test_cosim_on_request(tmp_path):
    _, hls, _ = record(tmp_path, 'pynq-z2', env={'HLS_STEPS': 'csim synth cosim export'})
    order = [l.split()[0] for l in hls if l.split()[0].endswith('_design')]
    assert order == ['csim_design', 'csynth_design', 'cosim_design', 'export_design']
    assert has(hls, rf'^cosim_design -trace_level none -argv {re.escape(str(tmp_path.parent))}/golden$')


@pytest.mark.parametrize('board_name', sorted(all_boards()))
def test_vivado_stops_without_the_board_files(tmp_path, board_name):
    board = get_board(board_name)
    _, vivado = write_scripts(tmp_path, 'sparsenet', board, FMT, board.clock_period_ns)
    others = ' '.join(b.board_part for b in map(get_board, all_boards()) if b.name != board.name)
    for installed in ('', others):
        res, lines = run_stubbed(vivado, {'STUB_BOARD_PARTS': installed})
        assert res.returncode == 1 and lines[-1] == 'exit 1'
        assert not has(lines, r'^set_property board_part ')
        error = res.stdout.strip()
        assert error.startswith(f'ERROR: [flow] board part {board.board_part} is not installed') and '\n' not in error
        item = board.board_part.split(':')[1].removesuffix('_som')
        assert f'xhub::install [xhub::get_xitems *{item}*]' in error and '<Vivado>/data/boards/board_files' in error
    res, lines = run_stubbed(vivado, {'STUB_BOARD_PARTS': f'{others} {board.board_part}'})
    assert res.returncode == 0 and not res.stdout and lines[-1] == 'exit 0'
    assert has(lines, rf'^set_property board_part {re.escape(board.board_part)} ')


@pytest.mark.csim
@pytest.mark.skipif(shutil.which('make') is None, reason='make not installed')
def test_csim_testbench_as_vitis_hls_builds_and_runs_it(default_build, tmp_path):
    """Each C++ file compiled with the cflags build_hls.tcl gives add_files, in a Makefile's recipe as
    csim does (its shell would strip the quotes of a -DTB_DATA="..."), then the testbench run where
    csim runs it, with the argument csim_design -argv passes and with none (its default)."""
    for sub in ('hls', 'golden'):
        shutil.copytree(default_build.root / sub, tmp_path / sub)
    hls = tmp_path / 'hls'
    res, lines = run_stubbed(hls / 'build_hls.tcl')
    assert res.returncode == 0, res.stderr
    files = [m.groups() for l in lines if (m := re.match(r'^add_files (?:-tb )?(\S+\.cpp) -cflags (.*)$', l))]
    assert len(files) == 3 and all('-std=c++14' in flags.split() for _, flags in files)
    build = hls / 'sparsenet_axi_prj' / 'solution1' / 'csim' / 'build'
    build.mkdir(parents=True)
    shutil.copytree(hls / 'firmware' / 'weights', build / 'weights')  # csim copies the -tb files here
    # Vitis HLS brings its own ap_int.h, hls_stream.h and ap_axi_sdata.h: here hls4ml's and our host stand-in
    objs = [f'{Path(src).stem}.o' for src, _ in files]
    (build / 'Makefile').write_text(
        f'INCLUDES = -I{SHIM_DIR} -I{hls / "firmware" / "ap_types"}\ncsim.exe: {" ".join(objs)}\n\t$(CXX) $^ -o $@\n'
        + ''.join(f'{obj}: {src}\n\t$(CXX) {flags} $(INCLUDES) -c $< -o $@\n' for obj, (src, flags) in zip(objs, files)))
    res = subprocess.run(['make', '-s'], cwd=build, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    argv = [l.split(' -argv ', 1)[1] for l in lines if l.startswith('csim_design ')]
    assert argv == [str(tmp_path / 'golden')]
    for args in (argv, []):
        res = subprocess.run([str(build / 'csim.exe'), *args], cwd=build, capture_output=True, text=True)
        assert res.returncode == 0 and res.stdout.startswith('PASS: 64 samples'), res.stderr + res.stdout
