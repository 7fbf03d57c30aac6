"""An off-board pynq.Device: memory in numpy, the AXI DMA simple-mode registers modelled, and
every transfer answered by the C simulation of the accelerator top (its bridge library, built by
the csim_compile step), so pynq's own Overlay and AxiDMA driver run unmodified.

Registers (AXI DMA product guide PG021, simple mode): MM2S at 0x00, S2MM at 0x30; +0x00 DMACR
(bit 0 run/stop), +0x04 DMASR (bit 0 halted, bit 1 idle), +0x18/0x1C address, +0x28 LENGTH
(writing it starts the transfer; after S2MM completes it reads back the bytes received).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pynq
from pynq.buffer import PynqBuffer
from pynqmetadata.frontends import Metadata
from pynq.metadata.runtime_metadata_parser import RuntimeMetadataParser

MM2S, S2MM = 0x00, 0x30
DMACR, DMASR, ADDR, LENGTH = 0x00, 0x04, 0x18, 0x28


def dma_base(hwh: Path, name: str = 'axi_dma_0') -> int:
    """The DMA's register address, as pynq's own parser reads it from the .hwh."""
    return RuntimeMetadataParser(Metadata(input=Path(hwh))).ip_dict[name]['phys_addr']


class EmulatedBuffer(PynqBuffer):
    def freebuffer(self):
        """Hand the memory back to the emulated device (tests check that the driver does)."""
        device = getattr(self, 'device', None)
        if device is not None and device.buffers.get(self.device_address) is self:
            del device.buffers[self.device_address]


class _Memory:
    def __init__(self, device):
        self.device = device

    def allocate(self, shape, dtype, **kwargs):
        return self.device.allocate(shape, dtype, **kwargs)


class EmulatedDevice(pynq.Device):
    def __init__(self, accel_lib: Path, top: str, dma_base: int, in_words: int, out_words: int):
        super().__init__('emulated')
        self.capabilities = {'REGISTER_RW': True}
        self.default_memory = _Memory(self)
        self.dma_base = dma_base
        self.regs = {MM2S + DMASR: 0x1, S2MM + DMASR: 0x1}  # halted until started
        self.buffers = {}  # physical address -> PynqBuffer
        self.next_addr = 0x1000_0000
        self.pending = b''  # output bytes of sent samples not yet received
        self.transfers = []  # (channel, bytes) for tests
        self.lib = ctypes.CDLL(str(accel_lib))
        self.run = getattr(self.lib, f'{top}_run')
        self.run.restype = ctypes.c_long
        self.word_bytes = getattr(self.lib, f'{top}_word_bytes')()
        self.in_words, self.out_words = in_words, out_words

    # --- metadata: the .hwh next to the bitstream, parsed by pynq's own parser
    def get_bitfile_metadata(self, bitfile_name, partial=False):
        return RuntimeMetadataParser(Metadata(input=Path(bitfile_name).with_suffix('.hwh')))

    # --- memory
    def allocate(self, shape, dtype, **kwargs):
        arr = np.zeros(shape, dtype=dtype)
        buf = arr.view(EmulatedBuffer)
        buf.device_address, buf.coherent, buf.device, buf.offset, buf.bo = self.next_addr, True, self, 0, 0
        self.buffers[self.next_addr] = buf
        self.next_addr += (arr.nbytes + 0xFFF) & ~0xFFF
        return buf

    def _memory_at(self, addr: int, nbytes: int) -> np.ndarray:
        for base, buf in self.buffers.items():
            if base <= addr and addr + nbytes <= base + buf.nbytes:
                return buf.view(np.uint8).reshape(-1)[addr - base : addr - base + nbytes]
        raise RuntimeError(f'DMA Decode Error: no buffer at 0x{addr:x} for {nbytes} bytes')

    # --- registers
    def read_registers(self, address, length):
        value = self.regs.get(address - self.dma_base, 0)
        return value.to_bytes(4, 'little')[:length]

    def write_registers(self, address, data):
        off = address - self.dma_base
        value = int.from_bytes(bytes(data), 'little')
        self.regs[off] = value
        for ch in (MM2S, S2MM):
            if off == ch + DMACR:
                self.regs[ch + DMASR] = 0x2 if value & 1 else 0x1  # running+idle, or halted
        if off == MM2S + LENGTH:
            self._send(value)
        elif off == S2MM + LENGTH:
            self.regs[S2MM + DMASR] = 0x0  # busy until the stream ends
            self._maybe_receive()

    def _send(self, nbytes: int):
        addr = self.regs.get(MM2S + ADDR, 0) | (self.regs.get(MM2S + ADDR + 4, 0) << 32)
        data = np.ascontiguousarray(self._memory_at(addr, nbytes))
        n_words = nbytes // self.word_bytes
        capacity = (n_words // self.in_words) * self.out_words
        out = np.zeros(capacity * self.word_bytes, dtype=np.uint8)
        last = np.zeros(capacity, dtype=np.uint8)
        u8 = ctypes.POINTER(ctypes.c_uint8)
        n_out = self.run(data.ctypes.data_as(u8), ctypes.c_ulong(n_words), ctypes.c_long(n_words - 1),
                         out.ctypes.data_as(u8), last.ctypes.data_as(u8), ctypes.c_ulong(capacity))
        if n_out < 0:
            self.regs[MM2S + DMASR] = 0x2 | 0x10  # internal error: not whole samples
            return
        if not last[n_out - 1] or last[: n_out - 1].any():
            raise RuntimeError('accelerator did not assert TLAST exactly on the last output word')
        self.transfers.append(('mm2s', nbytes))
        self.pending += out[: n_out * self.word_bytes].tobytes()
        self.regs[MM2S + DMASR] = 0x2
        self._maybe_receive()

    def _maybe_receive(self):
        if self.regs.get(S2MM + DMASR) != 0x0 or not self.pending:
            return
        want = self.regs[S2MM + LENGTH]
        addr = self.regs.get(S2MM + ADDR, 0) | (self.regs.get(S2MM + ADDR + 4, 0) << 32)
        got = self.pending[:want]  # a stream ends at TLAST: one sent batch per receive
        self._memory_at(addr, len(got))[:] = np.frombuffer(got, dtype=np.uint8)
        self.pending = self.pending[len(got):]
        self.regs[S2MM + LENGTH] = len(got)
        self.regs[S2MM + DMASR] = 0x2
        self.transfers.append(('s2mm', len(got)))
