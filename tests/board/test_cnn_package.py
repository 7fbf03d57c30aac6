"""A convolutional network's deployment package on the (emulated) board: the built-in io_stream CNN,
its AXI accelerator (the io_stream top, here its C simulation behind the emulated DMA), the driver
taking images and the board-side integer reference (convolutions, pooling) agree exactly."""

import subprocess

import numpy as np
import pytest
from conftest import HOST_CLI, load_package


@pytest.fixture(scope='module')
def cnn_board(tmp_path_factory):
    root = tmp_path_factory.mktemp('cnn')
    if not HOST_CLI.exists():
        pytest.fail(f'{HOST_CLI} not found: run scripts/setup first (the host flow builds the packages)')
    res = subprocess.run([str(HOST_CLI), '--model', 'fashion_cgs_cnn', '--build-dir', str(root / 'b'), '--epochs', '1',
                          '--n-golden', '24'], capture_output=True, text=True)
    assert res.returncode == 3, res.stderr[-3000:]
    mod, dev, bit = load_package(root / 'b', tmp_path_factory.mktemp('cnn_overlay'))
    return mod.SparseOverlay(bitfile_name=str(bit), download=False, device=dev)


def test_images_through_the_cnn_accelerator_equal_the_reference(cnn_board):
    ol = cnn_board
    x, expected, labels = ol.golden()
    assert ol.input_shape == (28, 28, 1) and x.shape == (24, 784)
    images = x.reshape(-1, 28, 28, 1)
    assert np.array_equal(ol.predict_codes(images), expected)
    assert np.array_equal(ol.predict_codes(images[:, :, :, 0], batch_size=5), expected)  # (n, H, W): one channel
    report = ol.check_reference(images)  # the board-side reference computes the convolutions itself
    assert report.passed
    assert {layer.kind for layer in ol.reference.layers} >= {'conv2d', 'block_sparse_conv2d', 'maxpool2d'}
    assert labels is not None and np.mean(np.argmax(expected, axis=1) == labels) > 0.5
