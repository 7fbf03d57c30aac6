"""The deployment package: a folder (and tarball) to copy to the board, installable with pip.

    package/<project>_<board>/
      pyproject.toml                 entry points pynq.overlays and pynq.notebooks (PYNQ conventions)
      <project>_overlay/
        __init__.py                  SparseOverlay, the driver
        runtime/                     the integer reference, stream format and driver (numpy + pynq)
        overlay/<project>.bit/.hwh   when Vivado built them
        notebooks/<project>.ipynb    golden check, accuracy, latency/throughput, resources
        data/golden/ data/reference/ data/reports/
        manifest.json                model, board, precisions, stream format, versions, checksums
    package/<project>_<board>.tar.gz
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import tarfile
from pathlib import Path

from flow.infra.build_dir import sha256, write_json
from flow.stages.notebook import write_notebook

RUNTIME_FILES = ('__init__.py', 'fixed.py', 'ref_layers.py', 'ref_activations.py', 'ref_block_sparse.py', 'ref_sst.py', 'sst_code.py', 'reference.py',
                 'stream.py', 'driver.py')
RUNTIME_FILES += ('ref_lstm.py', 'ref_conv.py', 'ref_depthwise.py', 'ref_merge.py', 'ref_pool.py')
RUNTIME_DIR = Path(__file__).resolve().parents[1] / 'runtime'


def _versions() -> dict:
    out = {}
    for dist in ('sparse-fpga-flow', 'hls4ml', 'qkeras', 'tensorflow', 'numpy'):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


PYPROJECT = '''[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "{project} on {board}: block-sparse accelerator overlay, driver and notebooks"
requires-python = ">=3.8"
dependencies = ["numpy", "pynq"]

[project.entry-points."pynq.overlays"]
{module} = "{module}.overlay"

[project.entry-points."pynq.notebooks"]
{module} = "{module}.notebooks"

[tool.setuptools]
packages = ["{module}", "{module}.runtime", "{module}.overlay", "{module}.notebooks"]

[tool.setuptools.package-data]
{module} = ["manifest.json", "data/*/*"]
"{module}.overlay" = ["*.bit", "*.hwh"]
"{module}.notebooks" = ["*.ipynb"]
'''


def make_package(ctx) -> dict:
    cfg, root = ctx.config, ctx.root
    board = ctx.board()
    project = cfg.project_name
    module = f'{project}_overlay'
    name = f'{project}_{board.name.replace("-", "")}'
    pkg = ctx.stage / 'package' / name
    mod = pkg / module
    (mod / 'runtime').mkdir(parents=True)
    for f in RUNTIME_FILES:
        shutil.copy(RUNTIME_DIR / f, mod / 'runtime' / f)
    (mod / '__init__.py').write_text(
        f'"""{project} overlay for {board.name}: see notebooks/ and runtime/driver.py."""\n\n'
        'from .runtime.driver import GoldenReport, SparseOverlay  # noqa: F401\n'
    )
    (mod / 'overlay').mkdir()
    (mod / 'overlay' / '__init__.py').write_text('')
    bit_dir = root / 'bitstream'
    built = ctx.build.done('vivado_bitstream') and (bit_dir / f'{project}.bit').is_file()
    if built:
        for suffix in ('.bit', '.hwh'):
            shutil.copy(bit_dir / f'{project}{suffix}', mod / 'overlay' / f'{project}{suffix}')
    data = mod / 'data'
    shutil.copytree(root / 'golden', data / 'golden')
    (data / 'reference').mkdir()
    for f in ('reference.json', 'reference.npz'):
        shutil.copy(root / 'reference' / f, data / 'reference' / f)
    (data / 'reports').mkdir()
    for src in [root / 'reference' / 'footprint.json', *(root / 'reports').glob('*.json'),
                *(root / 'hls_report').glob('*.json'), *(bit_dir.glob('*.json') if bit_dir.is_dir() else [])]:
        shutil.copy(src, data / 'reports' / src.name)
    (mod / 'notebooks').mkdir()
    (mod / 'notebooks' / '__init__.py').write_text('')
    write_notebook(mod / 'notebooks' / f'{project}.ipynb', module, project, board.name)
    (pkg / 'pyproject.toml').write_text(PYPROJECT.format(dist=name.replace('_', '-'), project=project, board=board.name, module=module))

    im = ctx.reference()
    stream = json.loads((root / 'hls' / 'stream_format.json').read_text())
    manifest = {
        'model': {'source': ctx.build.record('train')['summary'].get('source'), 'config': cfg.model_dump()},
        'board': {'name': board.name, 'part': board.part, 'ps': board.ps, 'pl_clock_mhz': board.pl_clock_mhz,
                  'hp_port_width': board.hp_port_width},
        'overlay': {'bitfile': f'{project}.bit', 'dma': 'axi_dma_0', 'accelerator': f'{project}_axi_0',
                    'status': 'built' if built else 'not built: Vivado was not run; rerun build-bitstream --from-step hls_synth'},
        'precisions': {l.name: l.out_type.hls() for l in im.layers},
        'stream_format': stream,
        'versions': _versions(),
    }
    manifest['checksums'] = {str(p.relative_to(mod)): sha256(p) for p in sorted(mod.rglob('*')) if p.is_file()}
    write_json(mod / 'manifest.json', manifest)
    with tarfile.open(ctx.stage / 'package' / f'{name}.tar.gz', 'w:gz') as tar:
        tar.add(pkg, arcname=name)
    return {'package': str(root / 'package' / name), 'bitstream': built, 'module': module}
