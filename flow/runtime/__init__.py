"""Board-side runtime: numpy (+ pynq on the board) only. Never import TensorFlow or hls4ml here."""
