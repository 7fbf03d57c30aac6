"""Vendor tool wrappers: report parsers (on format excerpts) and the failure path of a tool run."""

from pathlib import Path

import pytest

from flow.stages.vendor import ToolFailed, hls_command, parse_csynth, parse_timing, parse_utilization, run_tool

FIX = Path(__file__).parent / 'fixtures'


def test_parse_csynth():
    r = parse_csynth(FIX / 'csynth.xml')
    assert (r['target_clock_ns'], r['estimated_clock_ns'], r['latency_worst'], r['interval_max']) == ('10.00', '7.300', '61', '62')
    assert r['resources'] == {'BRAM_18K': '23', 'DSP': '40', 'FF': '9000', 'LUT': '12000', 'URAM': '0'}
    assert r['available']['DSP'] == '220'


def test_parse_utilization_takes_the_top_level_rows():
    u = parse_utilization(FIX / 'utilization.rpt')
    assert u == {'lut': {'used': 14383, 'available': 53200}, 'ff': {'used': 11020, 'available': 106400},
                 'bram36': {'used': 11.5, 'available': 140}, 'dsp': {'used': 40, 'available': 220}}


def test_parse_timing_reports_a_violation():
    assert parse_timing(FIX / 'timing.rpt') == {'wns_ns': -0.412, 'tns_ns': -3.1, 'met': False}


def test_tool_failure_shows_the_error_lines(tmp_path):
    script = 'echo "INFO: starting"; echo "ERROR: [HLS 214-124] use of undeclared identifier x"; exit 1'
    with pytest.raises(ToolFailed, match=r'(?s)Vitis HLS failed \(exit 1\).*ERROR: \[HLS 214-124\] use of undeclared'):
        run_tool(['bash', '-c', script], tmp_path, tmp_path / 'tool.log', 'Vitis HLS')
    assert 'INFO: starting' in (tmp_path / 'tool.log').read_text()
    # an ERROR in the log fails the step even when the tool exits 0
    with pytest.raises(ToolFailed, match='ERROR: bad'):
        run_tool(['bash', '-c', 'echo "ERROR: bad"'], tmp_path, tmp_path / 'tool.log', 'Vivado')


def test_hls_command_for_both_generations():
    assert hls_command('/opt/Xilinx/Vitis/2024.2/bin/vitis-run', 'build_hls.tcl') == [
        '/opt/Xilinx/Vitis/2024.2/bin/vitis-run', '--mode', 'hls', '--tcl', 'build_hls.tcl']
    assert hls_command('/opt/Xilinx/Vitis_HLS/2023.2/bin/vitis_hls', 'build_hls.tcl')[1:] == ['-f', 'build_hls.tcl']
