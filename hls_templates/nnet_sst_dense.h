// Structured sparse ternary (SST) dense layer, io_parallel and io_stream, multiplication-free datapath.
//
// Weights are t * scale, t in {-1, 0, +1} with at most `nonzeros` (K) non-zeros in every group of
// `group` (N) consecutive inputs of an output; each (output, group) is stored as one codeword, the
// rank of its pattern (flow/runtime/sst_code.py). Nothing else of the kernel is stored.
//
// The kernel itself is generated per layer (flow/hls/sst_emit.py, written by hls4ml into
// nnet_utils/nnet_code_gen.h as sst_dense_<index>) from the static structure of
// flow/runtime/sst_engine.py; the layer's config names it as kernel<...>::dense:
// - work item w = o * n_groups + g (output o, group g); n_dec decoders, reuse_factor cycles at
//   II=1: decoder d takes item d * reuse_factor + t in cycle t (items past n_work: codeword 0);
// - the group a decoder reads is a constant case table of the cycle counter (only the groups that
//   occur), the decoder ROM constants of the kernel (codeword -> K (position, sign) slots), each
//   slot one of the group's N inputs, added or subtracted: no multiplier touches the data;
// - per output, a sum updated only by the decoders that reach it, gated by constant comparisons
//   of the cycle; then once per output acc = sum * scale + bias (a power-of-two scale, the flow's
//   default quantized_po2, is a constant shift; a fixed-point scale a constant product).
// The flow sizes sum_t and accum_t so that every sum and the scaled result are exact.
#ifndef NNET_SST_DENSE_H_
#define NNET_SST_DENSE_H_

#include "nnet_common.h"
#include "nnet_stream_vector.h"

namespace nnet {

struct sst_dense_config {
    typedef unsigned code_t;
    typedef float scale_t;
    typedef float bias_t;
    typedef float sum_t;
    typedef float accum_t;

    static const unsigned n_in = 8;
    static const unsigned n_out = 1;
    static const unsigned group = 8;     // N
    static const unsigned nonzeros = 2;  // K
    static const unsigned n_groups = 1;  // n_in / group
    static const unsigned reuse_factor = 1;
    static const unsigned n_work = 1; // n_out * n_groups
    static const unsigned n_dec = 1;  // ceil(n_work / reuse_factor)

    // the generated kernel (sst_dense_<index>)
    template <class data_T, class res_T, class CONFIG_T> struct kernel {
        static void dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                          typename CONFIG_T::code_t codes[CONFIG_T::n_dec * CONFIG_T::reuse_factor],
                          typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                          typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {}
    };
};

template <class data_T, class res_T, typename CONFIG_T>
void sst_dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
               typename CONFIG_T::code_t codes[CONFIG_T::n_dec * CONFIG_T::reuse_factor],
               typename CONFIG_T::scale_t scale[CONFIG_T::n_out], typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {
    #pragma HLS INLINE
    static_assert(CONFIG_T::n_groups * CONFIG_T::group == CONFIG_T::n_in, "groups must tile the inputs");
    static_assert(CONFIG_T::n_dec * CONFIG_T::reuse_factor >= CONFIG_T::n_work, "decoders must cover the work");
    CONFIG_T::template kernel<data_T, res_T, CONFIG_T>::dense(data, res, codes, scale, biases);
}

// io_stream: the same kernel on the gathered input vector (nnet_stream_vector.h).
template <class data_T, class res_T, typename CONFIG_T>
void sst_dense(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
               typename CONFIG_T::code_t codes[CONFIG_T::n_dec * CONFIG_T::reuse_factor],
               typename CONFIG_T::scale_t scale[CONFIG_T::n_out], typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {
    typename data_T::value_type data[CONFIG_T::n_in];
    #pragma HLS ARRAY_PARTITION variable=data complete dim=1
    typename res_T::value_type res[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=res complete dim=1
    read_vector<data_T, CONFIG_T::n_in>(data_stream, data);
    sst_dense<typename data_T::value_type, typename res_T::value_type, CONFIG_T>(data, res, codes, scale, biases);
    write_vector<res_T, CONFIG_T::n_out>(res, res_stream);
}

} // namespace nnet

#endif
