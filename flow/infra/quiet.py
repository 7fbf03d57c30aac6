"""TensorFlow/Keras log lines and warnings are hidden unless asked for (``--verbose``).

TensorFlow's C++ logging is read from the environment when TensorFlow loads, so ``flow`` sets it
on import (a user's own setting wins); its Python logger and Keras' warnings are set once
TensorFlow is imported (``keras_models.layers``).
"""

from __future__ import annotations

import logging
import os
import warnings

VERBOSE_ENV = 'SPARSE_FLOW_VERBOSE'


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == '1'


def set_verbose(on: bool) -> None:
    os.environ[VERBOSE_ENV] = '1' if on else '0'
    os.environ['TF_CPP_MIN_LOG_LEVEL'] = '0' if on else '3'


def quiet_native() -> None:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '0' if verbose() else '3')


def quiet_python() -> None:
    if verbose():
        return
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger('absl').setLevel(logging.ERROR)
    for module in ('keras', 'tensorflow', 'qkeras', 'hls4ml', 'h5py'):
        warnings.filterwarnings('ignore', module=module)
    warnings.filterwarnings('ignore', category=UserWarning, message='.*HDF5 file via `model.save\\(\\)`')
