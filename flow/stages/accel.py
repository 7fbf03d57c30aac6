"""The AXI4-Stream accelerator around the hls4ml model: C++ top, testbench and C-sim bridge.

Sources are filled from hls_templates/accel/*.in with the numbers of one StreamFormat, so the
packing in hardware, testbench, emulator and board driver has a single definition.
"""

from __future__ import annotations

import re
from pathlib import Path


from flow.infra import processes
from flow.infra.processes import compiler_errors
from flow.hls import TEMPLATES_DIR
from flow.runtime.reference import IntegerModel
from flow.runtime.stream import StreamFormat

ACCEL_DIR = TEMPLATES_DIR / 'accel'
SHIM_DIR = TEMPLATES_DIR / 'host_shim'


def stream_format(im: IntegerModel, word_bits: int = 64) -> StreamFormat:
    sizes = list(im.sizes().values())
    return StreamFormat(sizes[0], sizes[-1], im.in_type, im.out_type, word_bits)


def top_name(project: str) -> str:
    return f'{project}_axi'


def fill(template: Path, values: dict) -> str:
    text = template.read_text()
    for k, v in values.items():
        text = text.replace(f'@{k}@', str(v))
    left = sorted(set(re.findall(r'@([A-Z_]+)@', text)))
    if left:
        raise KeyError(f'{template}: placeholders without values: {left}')
    return text


TOP_TEMPLATES = {'io_parallel': 'axi_top.cpp.in', 'io_stream': 'axi_top_stream.cpp.in'}


def write_sources(hls_dir: Path, project: str, fmt: StreamFormat, io_type: str = 'io_parallel') -> list[Path]:
    """The accelerator's C++ (top, header, C-sim bridge, testbench) for the hls4ml project in
    ``hls_dir``. ``io_type`` is the project's: io_parallel tops take arrays (the top reads the whole
    sample, then calls the model), io_stream tops take hls::stream of nnet::array packs (a DATAFLOW
    region: lanes -> packs, the model, packs -> lanes). The stream format is the same for both."""
    if io_type not in TOP_TEMPLATES:
        raise ValueError(f'io_type {io_type!r} has no accelerator top; use one of {sorted(TOP_TEMPLATES)}')
    out_t = fmt.out_type
    values = {
        'PROJECT': project, 'TOP': top_name(project), 'GUARD': f'{project.upper()}_AXI_H_',
        'WORD_BITS': fmt.word_bits, 'N_IN': fmt.n_in, 'N_OUT': fmt.n_out,
        'IN_WIDTH': fmt.in_type.width, 'OUT_WIDTH': out_t.width,
        'IN_LANE_BITS': fmt.in_lane_bits, 'IN_LANES': fmt.in_lanes, 'IN_WORDS': fmt.in_words,
        'OUT_LANE_BITS': fmt.out_lane_bits, 'OUT_LANES': fmt.out_lanes, 'OUT_WORDS': fmt.out_words,
        'OUT_RAW_T': f'ap_{"" if out_t.signed else "u"}int<{out_t.width}>',
    }
    files = {
        hls_dir / 'firmware' / f'{project}_axi.h': 'axi_top.h.in',
        hls_dir / 'firmware' / f'{project}_axi.cpp': TOP_TEMPLATES[io_type],
        hls_dir / f'{project}_axi_bridge.cpp': 'axi_bridge.cpp.in',
        hls_dir / f'{project}_axi_tb.cpp': 'axi_tb.cpp.in',
    }
    for path, template in files.items():
        path.write_text(fill(ACCEL_DIR / template, values))
    return list(files)


def golden_words(fmt: StreamFormat, x_codes, y_codes, folder: Path) -> None:
    """The golden vectors as the stream words the DMA moves (hex, one word per line)."""
    for name, data in (('axi_in_words.hex', fmt.pack_inputs(x_codes)), ('axi_out_words.hex', fmt.pack_outputs(y_codes))):
        words = data.reshape(-1, fmt.word_bytes)[:, ::-1]  # most significant byte first
        (folder / name).write_text(''.join(w.tobytes().hex() + '\n' for w in words))


def _gxx(args: list[str], cwd: Path, what: str) -> None:
    res = processes.run(['g++', '-O2', '-std=c++14', '-fPIC', f'-I{SHIM_DIR}', '-Ifirmware', '-Ifirmware/ap_types', *args],
                         cwd=cwd, capture_output=True, text=True)
    if res.returncode:
        raise compiler_errors(res, what)


def compile_host(hls_dir: Path, project: str) -> list[Path]:
    """Build the accelerator's C simulation here: the testbench executable and the bridge library
    (with a host stand-in for ap_axi_sdata.h). The hls4ml weights are read from the project."""
    hls_dir = Path(hls_dir)
    weights = f'-DWEIGHTS_DIR="{hls_dir.resolve() / "firmware" / "weights"}"'
    objs = []
    for src in (f'firmware/{project}.cpp', f'firmware/{project}_axi.cpp'):
        obj = f'{Path(src).stem}.host.o'
        _gxx([weights, '-c', src, '-o', obj], hls_dir, src)
        objs.append(obj)
    lib, tb = hls_dir / f'lib{project}_axi.so', hls_dir / f'{project}_axi_tb'
    _gxx(['-shared', f'{project}_axi_bridge.cpp', *objs, '-o', lib.name], hls_dir, 'accelerator bridge')
    _gxx([f'{project}_axi_tb.cpp', *objs, '-o', tb.name], hls_dir, 'accelerator testbench')
    for obj in objs:
        (hls_dir / obj).unlink()
    return [lib, tb]


def run_testbench(hls_dir: Path, project: str, tb_data: Path) -> str:
    """Run the compiled testbench on golden stream words; raises with its message on FAIL."""
    res = processes.run([str(Path(hls_dir) / f'{project}_axi_tb'), str(Path(tb_data).resolve())], capture_output=True,
                         text=True, env={'PATH': '/usr/bin:/bin'}, cwd=tb_data)
    if res.returncode:
        raise RuntimeError(f'accelerator testbench: {(res.stderr or res.stdout).strip()}')
    return res.stdout.strip()
