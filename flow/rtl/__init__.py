"""The network as RTL without vendor tools: da4ml logic from the integer reference, Verilator
co-simulation on the golden vectors, yosys resources for the board's FPGA family; and the HLS
kernels' time-multiplexed engines, cycle by cycle, for the layers whose HLS kernel we generate.

- ``logic``: every reference layer as da4ml logic with exactly the reference's types;
- ``simulate``: Verilog written by da4ml, Verilated and run; output codes compared exactly;
- ``engine``: the block-sparse engine as Verilog from a schedule (``flow/runtime/schedule.py``);
  ``sst_engine``, ``lstm_engine``: the SST and LSTM engines from their static structures; each
  registers its builder (``engine_design.engine_for``; ``engines`` imports them all);
- ``engine_sim``: the engine Verilated with our testbench, samples back to back, cycles counted;
- ``synth``: yosys ``synth_xilinx`` (LUT, FF, CARRY, DSP, BRAM, register-to-register logic depth);
- ``build``: the rtl step; ``tools``: where Verilator and yosys are, and what is missing.
"""
