"""The deployment package on an emulated PYNQ device: pynq's own Overlay and AxiDMA driver, the
DMA registers modelled, every transfer computed by the accelerator top's C simulation."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import forget_package, load_package, module_dir, package_dir

BOARDS = ['pynq-z1', 'pynq-z2', 'zcu104', 'ultra96v2', 'kv260']


def run_notebook(notebook: Path, overlay_args: dict, sys_path=()) -> dict:
    """Execute the notebook's code cells as a fresh kernel opened on it does: the notebook's folder
    as the working directory and first on sys.path, the package not imported, ``sys_path`` (an
    install target) added; the parameters cell as shipped, then ``overlay_args`` (the emulated
    device) in its place. Returns the notebook's namespace."""
    nb = json.loads(notebook.read_text())
    assert 'parameters' in nb['cells'][1]['metadata']['tags']
    code = [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code']
    import matplotlib

    matplotlib.use('Agg')
    saved_path, saved_cwd = list(sys.path), os.getcwd()
    forget_package()
    sys.path[:0] = [str(p) for p in (notebook.parent, *sys_path)]
    os.chdir(notebook.parent)
    try:
        ns = {'__name__': '__main__'}
        exec(code[0], ns)
        ns['overlay_args'] = overlay_args
        for cell in code[1:]:
            exec(cell, ns)
        return ns
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        forget_package()


def unpack(build, dest: Path) -> Path:
    """The package's tarball unpacked into ``dest``, as on the board; returns the package folder."""
    with tarfile.open(build / 'package' / f'{package_dir(build).name}.tar.gz') as tar:
        tar.extractall(dest)
    return dest / package_dir(build).name


def pip_install(build, tmp_path: Path) -> Path:
    """``pip install`` of the unpacked package folder (not the build's: pip writes build/ and
    *.egg-info into it) into a throwaway target; returns the installed module."""
    target = tmp_path / 'site'
    res = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--no-build-isolation',
                          '--target', str(target), str(unpack(build, tmp_path / 'unpacked'))], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return target / 'sparsenet_overlay'


def test_runtime_imports_no_tensorflow_or_hls4ml(built, tmp_path):
    mod, _, _ = load_package(built('pynq-z2'), tmp_path)
    assert 'tensorflow' not in sys.modules and 'hls4ml' not in sys.modules
    assert mod.SparseOverlay.__mro__[1].__module__ == 'pynq.overlay'


@pytest.mark.parametrize('board', BOARDS)
def test_notebook_golden_check_passes_on_the_emulated_device(built, tmp_path, board):
    """Opened as the README's first option does: the tarball unpacked, its notebook opened in place."""
    build = built(board)
    _, dev, bit = load_package(build, tmp_path)
    unpacked = unpack(build, tmp_path) / 'sparsenet_overlay'
    ns = run_notebook(unpacked / 'notebooks' / 'sparsenet.ipynb', {'bitfile_name': str(bit), 'download': False, 'device': dev})
    assert ns['ol'].package_dir == unpacked  # the package the notebook sits in
    assert ns['golden'].passed and ns['golden'].n_vectors == 96
    assert ns['fresh_check'].passed
    assert ns['golden'].accuracy > 0.8
    assert {r['batch'] for r in ns['rows']} == {1, 8, 64, 512, 4096}
    assert ns['ol'].manifest['board']['name'] == board
    expected_base = 0x40400000 if board.startswith('pynq') else 0xA0000000  # what build_vivado.tcl assigns
    assert ns['ol'].ip_dict['axi_dma_0']['phys_addr'] == dev.dma_base == expected_base
    params = ns['ol'].dma.description['parameters']  # the widths build_vivado.tcl sets for this board
    assert int(params['C_M_AXI_MM2S_DATA_WIDTH']) == ns['ol'].manifest['board']['hp_port_width']
    assert int(params['C_M_AXIS_MM2S_TDATA_WIDTH']) == int(params['C_S_AXIS_S2MM_TDATA_WIDTH']) == ns['ol'].format.word_bits


def test_driver_splits_batches_and_returns_copies(built, tmp_path):
    build = built('pynq-z2')
    mod, dev, bit = load_package(build, tmp_path)
    ol = mod.SparseOverlay(bitfile_name=str(bit), download=False, device=dev)
    x, expected, _ = ol.golden()
    ol.max_transfer_bytes = 10 * ol.format.in_words * ol.format.word_bytes  # pretend a tiny DMA: 10 samples a transfer
    dev.transfers.clear()
    out = ol.predict_codes(x)
    assert np.array_equal(out, expected)
    sends = [n for ch, n in dev.transfers if ch == 'mm2s']
    assert len(sends) == -(-len(x) // 10) and max(sends) <= ol.max_transfer_bytes
    assert dev.buffers == {}  # every DMA buffer was freed after its transfer
    out[0, 0] += 1
    assert not np.array_equal(out, ol.predict_codes(x))  # a fresh array each call


def test_a_wrong_answer_fails_with_the_first_mismatch(built, tmp_path):
    mod, dev, bit = load_package(built('pynq-z2'), tmp_path)
    ol = mod.SparseOverlay(bitfile_name=str(bit), download=False, device=dev)
    x, expected, labels = ol.golden()
    tampered = expected.copy()
    tampered[3, 7] += 1
    report = mod.runtime.driver.compare(ol.predict_codes(x), tampered, labels)
    assert not report.passed
    assert report.first_mismatch == {'sample': 3, 'element': 7, 'expected': int(tampered[3, 7]), 'actual': int(expected[3, 7])}
    assert str(report).startswith('FAIL: sample 3, output 7')


def test_missing_bitstream_is_explained(built, tmp_path):
    mod, dev, _ = load_package(built('pynq-z2'), tmp_path)
    with pytest.raises(FileNotFoundError, match='not built: Vivado was not run.*--from-step hls_synth'):
        mod.SparseOverlay(download=False, device=dev)


def test_package_manifest_and_entry_points(built):
    build = built('kv260')
    mod = module_dir(build)
    manifest = json.loads((mod / 'manifest.json').read_text())
    assert manifest['board']['part'] == 'xck26-sfvc784-2LV-c'
    assert manifest['stream_format']['word_bits'] == 64
    assert set(manifest['precisions']) == {'pixels', 'fc1', 'relu1', 'fc2', 'relu2', 'logits'}
    import hashlib

    for rel, digest in manifest['checksums'].items():
        assert hashlib.sha256((mod / rel).read_bytes()).hexdigest() == digest
    pyproject = (package_dir(build) / 'pyproject.toml').read_text()
    assert '[project.entry-points."pynq.overlays"]' in pyproject and '[project.entry-points."pynq.notebooks"]' in pyproject
    assert (build / 'package' / f'{package_dir(build).name}.tar.gz').is_file()


def test_package_installs_with_pip_and_registers_its_entry_points(built, tmp_path):
    from importlib.metadata import distributions

    build = built('pynq-z2')
    installed = pip_install(build, tmp_path)
    target = installed.parent
    (dist,) = [d for d in distributions(path=[str(target)]) if d.metadata['Name'] == 'sparsenet-pynqz2']
    eps = {(e.group, e.name): e.value for e in dist.entry_points}
    assert eps == {('pynq.overlays', 'sparsenet_overlay'): 'sparsenet_overlay.overlay',
                   ('pynq.notebooks', 'sparsenet_overlay'): 'sparsenet_overlay.notebooks'}
    for rel in ('manifest.json', 'notebooks/sparsenet.ipynb', 'data/golden/output_codes.npy', 'data/reference/reference.npz',
                'runtime/driver.py'):
        assert (installed / rel).is_file(), rel


def test_notebook_runs_from_the_pip_installed_package(built, tmp_path):
    """The README's second option: installed, the notebook opened where pip put it, and copied out
    as `pynq get-notebooks` does (to pynq-notebooks/<name>/, with the folder's __init__.py): both
    must use the installed package, the copy without mistaking its own folder for one."""
    build = built('pynq-z2')
    _, dev, bit = load_package(build, tmp_path)
    installed = pip_install(build, tmp_path)
    delivered = tmp_path / 'pynq-notebooks' / 'sparsenet_overlay'
    shutil.copytree(installed / 'notebooks', delivered)
    for notebook in (installed / 'notebooks' / 'sparsenet.ipynb', delivered / 'sparsenet.ipynb'):
        ns = run_notebook(notebook, {'bitfile_name': str(bit), 'download': False, 'device': dev}, sys_path=[installed.parent])
        assert ns['golden'].passed and ns['fresh_check'].passed
        assert ns['ol'].package_dir == installed, notebook


@pytest.mark.parametrize('matplotlib_on_board', [True, False])
def test_notebook_shows_golden_images_for_an_image_model(built, tmp_path, monkeypatch, matplotlib_on_board):
    """A package whose model takes (H, W, C) images (here the digits MLP's 64 inputs declared as the
    8x8x1 images they are, flattened by the reference before its first dense layer): the notebook
    shows the first golden images, channel 0, with the class the board predicts; without
    matplotlib it prints the classes and runs on."""
    build = built('pynq-z2')
    _, dev, bit = load_package(build, tmp_path)
    unpacked = unpack(build, tmp_path) / 'sparsenet_overlay'
    ref_json = unpacked / 'data' / 'reference' / 'reference.json'
    doc = json.loads(ref_json.read_text())
    doc['layers'][0]['shape'] = [8, 8, 1]
    doc['layers'].insert(1, {'kind': 'flatten', 'name': 'flatten', 'out_type': doc['layers'][0]['out_type']})
    ref_json.write_text(json.dumps(doc))
    import matplotlib.pyplot as plt

    plt.close('all')
    if not matplotlib_on_board:
        monkeypatch.setitem(sys.modules, 'matplotlib.pyplot', None)  # import matplotlib.pyplot raises ImportError
    ns = run_notebook(unpacked / 'notebooks' / 'sparsenet.ipynb', {'bitfile_name': str(bit), 'download': False, 'device': dev})
    x, expected, labels = ns['ol'].golden()
    assert ns['golden'].passed and ns['fresh_check'].passed
    assert ns['ol'].input_shape == (8, 8, 1) and ns['images'].shape == (4, 8, 8, 1)
    assert np.array_equal(ns['images'].reshape(4, -1), ns['ol'].format.in_type.to_float(x[:4]))
    assert np.array_equal(ns['predicted'], expected[:4].argmax(1))
    assert ns['titles'][0] == f'predicted {expected[0].argmax()} (label {labels[0]})'
    if matplotlib_on_board:
        shown = [ax.get_title() for ax in ns['img_fig'].axes]
        assert shown == ns['titles']
        assert np.array_equal(ns['img_fig'].axes[1].images[0].get_array(), ns['images'][1, :, :, 0])
    else:
        assert ns['plt'] is None


def test_notebook_of_a_flat_model_shows_no_images(built, tmp_path):
    build = built('pynq-z2')
    _, dev, bit = load_package(build, tmp_path)
    unpacked = unpack(build, tmp_path) / 'sparsenet_overlay'
    ns = run_notebook(unpacked / 'notebooks' / 'sparsenet.ipynb', {'bitfile_name': str(bit), 'download': False, 'device': dev})
    assert ns['shape'] == (64,) and 'images' not in ns
