"""The on-board notebook of a deployment package (Jupyter nbformat 4, written as JSON).

Its first code cell is a parameters cell (tagged ``parameters``, papermill style): on the board it
is empty; the off-board tests put an emulated device there.
"""

from __future__ import annotations

import json
from pathlib import Path


def _md(text: str) -> dict:
    return {'cell_type': 'markdown', 'metadata': {}, 'source': text.strip('\n').splitlines(keepends=True)}


def _code(text: str, tags=()) -> dict:
    meta = {'tags': list(tags)} if tags else {}
    return {'cell_type': 'code', 'metadata': meta, 'execution_count': None, 'outputs': [],
            'source': text.strip('\n').splitlines(keepends=True)}


def cells(module: str, project: str, board: str) -> list[dict]:
    return [
        _md(f'''
# {project} on {board}: bit-exact check, accuracy, latency and resources

This notebook loads the overlay (PS + AXI DMA + the block-sparse accelerator), runs the golden
vectors saved by `build-bitstream` and compares every output code with the integer reference:
**PASS** only if all of them are equal, bit for bit.
'''),
        _code('overlay_args = {}  # parameters: e.g. {"download": False} to reuse a loaded bitstream', tags=('parameters',)),
        _code(f'''
import json
import sys
from pathlib import Path

import numpy as np

# Opened in the unpacked package (<folder>/{module}/notebooks/), the working directory is
# notebooks/ and Python cannot see the package: use the one this notebook sits in. Elsewhere
# (pip-installed and copied by `pynq get-notebooks`) the installed package is imported.
for folder in (Path.cwd(), *Path.cwd().parents):
    if (folder / "{module}" / "manifest.json").is_file():
        sys.path.insert(0, str(folder))
        break
from {module} import SparseOverlay

ol = SparseOverlay(**overlay_args)
print("package:", ol.package_dir)
print(ol.manifest["board"], ol.manifest["overlay"]["status"])
'''),
        _md('## Golden vectors: PASS / FAIL, bit-exact'),
        _code('''
golden = ol.check_golden()
print(golden)
assert golden.passed, golden
'''),
        _md('## Accuracy on the test batch, and fresh inputs against the reference computed here'),
        _code('''
output = ol.manifest["model"]["config"].get("output", "model")
print("deployed output:", "the model's logits (its final softmax stripped)" if output == "logits" else "the model's own output")
if golden.accuracy is None:
    print("no class labels with the golden vectors (random codes, inputs only, or regression targets): no accuracy; "
          "the build's reports/verify.json gives a regressor's error")
else:
    print(f"accuracy on {golden.n_vectors} test samples: {golden.accuracy:.4f}")
t = ol.format.in_type
fresh = np.random.default_rng(0).integers(t.min_code, t.max_code + 1, size=(512, ol.format.n_in))
fresh_check = ol.check_reference(fresh)
print("fresh random inputs vs the integer reference:", fresh_check)
assert fresh_check.passed, fresh_check
'''),
        _md('## Golden images and their predicted classes (a model whose input is an image)'),
        _code('''
shape = ol.input_shape
if len(shape) == 3:  # (H, W, C): the golden vectors are flat rows, pixel after pixel, channels fastest
    x_img, _, img_labels = ol.golden()
    n_show = min(4, len(x_img))
    images = ol.format.in_type.to_float(x_img[:n_show]).reshape(n_show, *shape)
    predicted = ol.predict(images).argmax(1)  # the image shape goes to the board as it is
    titles = [f"predicted {p}" + ("" if img_labels is None else f" (label {img_labels[i]})") for i, p in enumerate(predicted)]
    print(f"input images {shape[0]}x{shape[1]}, {shape[2]} channel(s):", "; ".join(titles))
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
        print("matplotlib not installed: no pictures")
    if plt is not None:
        img_fig, axes = plt.subplots(1, n_show, figsize=(2.5 * n_show, 2.8), squeeze=False)
        for ax, image, title in zip(axes[0], images, titles):
            ax.imshow(image[:, :, 0], cmap="gray")  # channel 0
            ax.set_title(title); ax.axis("off")
        plt.tight_layout(); plt.show()
else:
    print(f"the model's input is {shape}, not an image: nothing to show")
'''),
        _md('## Latency and throughput over batch sizes'),
        _code('''
rows = ol.benchmark(batch_sizes=(1, 8, 64, 512, 4096))
for r in rows:
    print(f"batch {r['batch']:5d}: latency {r['latency_s'] * 1e3:9.3f} ms, {r['samples_per_s']:12.1f} samples/s")
try:
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    b = [r["batch"] for r in rows]
    ax[0].loglog(b, [r["latency_s"] * 1e3 for r in rows], "o-"); ax[0].set_xlabel("batch"); ax[0].set_ylabel("latency (ms)")
    ax[1].semilogx(b, [r["samples_per_s"] for r in rows], "o-"); ax[1].set_xlabel("batch"); ax[1].set_ylabel("samples/s")
    plt.tight_layout(); plt.show()
except ImportError:
    print("matplotlib not installed: no plot")
'''),
        _md('## Resources and memory footprint'),
        _code('''
reports = ol.package_dir / "data" / "reports"
fp = json.loads((reports / "footprint.json").read_text())["total"]
print(f"weights + index + biases: {fp['total_bits']} bits" + ("" if fp['ratio_vs_float32'] is None else
      f"; {fp['ratio_vs_float32']:.1f}x smaller than dense float32, {fp['ratio_vs_float64']:.1f}x than float64"))
est = json.loads((reports / "estimate.json").read_text())
for name, layer in est["layers"].items():
    o, d = layer["ours"], layer["hls4ml_dense"]
    print(f"{name:10s} RF {layer['reuse_factor']:4d}: {o['multipliers']:5d} multipliers (dense {d['multipliers']}), "
          f"{o['bram18']:3d} BRAM18 (dense {d['bram18']}), {o['cycles']} cycles")
for extra in ("csynth.json", "implementation.json"):
    if (reports / extra).is_file():
        print(extra, json.loads((reports / extra).read_text()))
'''),
    ]


def write_notebook(path: Path, module: str, project: str, board: str) -> None:
    nb = {
        'nbformat': 4, 'nbformat_minor': 5,
        'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}},
        'cells': cells(module, project, board),
    }
    for i, c in enumerate(nb['cells']):
        c['id'] = f'cell-{i}'
    Path(path).write_text(json.dumps(nb, indent=1))
