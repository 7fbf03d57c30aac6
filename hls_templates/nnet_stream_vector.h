// io_stream adapters for our vector kernels (dense-like layers): the whole input vector is
// gathered from the stream's packs, the io_parallel kernel runs on it, and its outputs leave as
// packs. A dense layer needs every input before its first output, so this is what hls4ml's own
// io_stream Dense does too (nnet_dense_stream.h).
#ifndef NNET_STREAM_VECTOR_H_
#define NNET_STREAM_VECTOR_H_

#include "hls_stream.h"

namespace nnet {

template <class data_T, unsigned N> void read_vector(hls::stream<data_T> &stream, typename data_T::value_type data[N]) {
    static_assert(N % data_T::size == 0, "the vector must be whole packs");
ReadPacks:
    for (unsigned i = 0; i < N / data_T::size; i++) {
        #pragma HLS PIPELINE
        data_T pack = stream.read();
    ReadElements:
        for (unsigned j = 0; j < data_T::size; j++) {
            #pragma HLS UNROLL
            data[i * data_T::size + j] = pack[j];
        }
    }
}

template <class res_T, unsigned N> void write_vector(typename res_T::value_type res[N], hls::stream<res_T> &stream) {
    static_assert(N % res_T::size == 0, "the vector must be whole packs");
WritePacks:
    for (unsigned i = 0; i < N / res_T::size; i++) {
        #pragma HLS PIPELINE
        res_T pack;
        PRAGMA_DATA_PACK(pack)
    WriteElements:
        for (unsigned j = 0; j < res_T::size; j++) {
            #pragma HLS UNROLL
            pack[j] = res[i * res_T::size + j];
        }
        stream.write(pack);
    }
}

} // namespace nnet

#endif
