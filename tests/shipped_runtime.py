"""Run a reference with the runtime files the package ships, as the board does: numpy only."""

import shutil
import subprocess
import sys

import numpy as np


def predict_with_shipped_runtime(tmp_path, im, x) -> np.ndarray:
    """``im.predict_codes(x)`` computed by the files the package copies to the board, in a fresh
    interpreter where TensorFlow, hls4ml, QKeras, our Keras layers and the flow itself cannot be imported."""
    from flow.stages.package import RUNTIME_DIR, RUNTIME_FILES

    (tmp_path / 'ref').mkdir(parents=True)
    im.save(tmp_path / 'ref')
    (tmp_path / 'board' / 'runtime').mkdir(parents=True)
    (tmp_path / 'board' / '__init__.py').write_text('')
    for f in RUNTIME_FILES:
        shutil.copy(RUNTIME_DIR / f, tmp_path / 'board' / 'runtime' / f)
    np.save(tmp_path / 'x.npy', x)
    code = ("import sys; sys.modules.update(tensorflow=None, hls4ml=None, flow=None, qkeras=None, keras_models=None)\n"
            "import numpy as np\nfrom board.runtime.reference import IntegerModel\n"
            f"m = IntegerModel.load({str(tmp_path / 'ref')!r})\n"
            f"np.save({str(tmp_path / 'y.npy')!r}, m.predict_codes(np.load({str(tmp_path / 'x.npy')!r})))\n")
    subprocess.run([sys.executable, '-c', code], cwd=tmp_path, check=True)
    return np.load(tmp_path / 'y.npy')
