"""The network as RTL without vendor tools: da4ml logic from the integer reference, Verilator
co-simulation on the golden vectors, yosys resources for the board's FPGA family; and the HLS
template's time-multiplexed engine, cycle by cycle, for the block-sparse layers.

- ``logic``: every reference layer as da4ml logic with exactly the reference's types;
- ``simulate``: Verilog written by da4ml, Verilated and run; output codes compared exactly;
- ``engine``: the block-sparse engine as Verilog from a schedule (``flow/runtime/schedule.py``);
- ``engine_sim``: the engine Verilated with our testbench, samples back to back, cycles counted;
- ``synth``: yosys ``synth_xilinx`` (LUT, FF, CARRY, DSP, BRAM, register-to-register logic depth);
- ``build``: the rtl step; ``tools``: where Verilator and yosys are, and what is missing.
"""
