"""The network as RTL without vendor tools: da4ml logic from the integer reference, Verilator
co-simulation on the golden vectors, yosys resources for the board's FPGA family.

- ``logic``: every reference layer as da4ml logic with exactly the reference's types;
- ``simulate``: Verilog written by da4ml, Verilated and run; output codes compared exactly;
- ``synth``: yosys ``synth_xilinx`` per layer (LUT, FF, CARRY, DSP, BRAM, logic depth);
- ``tools``: where Verilator and yosys are, and what is missing.
"""
