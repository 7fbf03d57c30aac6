"""Block-sparse QKeras -> hls4ml -> PYNQ deployment flow.

Importing ``flow`` is cheap; TensorFlow and hls4ml load only in the steps that need them.
"""

__version__ = '0.1.0'

from flow.infra import quiet as _quiet

_quiet.quiet_native()  # before anything imports TensorFlow
