// Coarse-grain block-sparse dense layer (CGS/HCGS), io_parallel and io_stream: an output-stationary
// ("gather") time-multiplexed MAC engine, reuse_factor cycles at II=1.
//
// The kernel itself is generated per layer (flow/hls/block_sparse_emit.py, written by hls4ml into
// nnet_utils/nnet_code_gen.h as block_sparse_dense_<index>) from the same static structure
// (flow/runtime/static_engine.py, on the gather schedule of flow/runtime/schedule.py) as the
// Verilog engine flow/rtl/engine.py that the rtl step measures and simulates: per-lane input
// selects as constant case tables of the cycle counter, per-output accumulators updated only by
// the multipliers that reach them, gated by constant comparisons of the cycle, or, where the
// schedule lets a multiplier work through several outputs one after another, one running sum per
// multiplier, cast once and written to res[o] in the constant cycle that finishes o (an output that
// two lanes compute at once: the sum of their running sums, cast once). The layer's config
// names it as kernel<...>::dense; this header only holds the config's defaults and the calls.
//
// Weights: bank m = weights[m*reuse_factor .. m*reuse_factor + reuse_factor - 1], word t is what
// multiplier m multiplies in cycle t (zero in padding slots). Binary/ternary kernels arrive as
// 2-bit codes -1/0/+1 whose step is the layer's alpha (weight_t = ap_fixed<2, 2 + log2 alpha>).
#ifndef NNET_BLOCK_SPARSE_DENSE_H_
#define NNET_BLOCK_SPARSE_DENSE_H_

#include "nnet_common.h"
#include "nnet_stream_vector.h"

namespace nnet {

struct block_sparse_dense_config {
    typedef float accum_t;
    typedef float bias_t;
    typedef float weight_t;

    static const unsigned n_in = 8;
    static const unsigned n_out = 8;
    static const unsigned block_in = 1;
    static const unsigned block_out = 1;
    static const unsigned reuse_factor = 1;
    static const unsigned n_lanes = 8;
    static const unsigned n_mult = 8;  // n_lanes * block_out weight banks
    static const unsigned n_slots = 8; // n_mult * reuse_factor stored weights, padding included

    // the generated kernel (block_sparse_dense_<index>)
    template <class data_T, class res_T, class CONFIG_T> struct kernel {
        static void dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                          typename CONFIG_T::weight_t weights[CONFIG_T::n_slots],
                          typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {}
    };
};

template <class data_T, class res_T, typename CONFIG_T>
void block_sparse_dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                        typename CONFIG_T::weight_t weights[CONFIG_T::n_slots],
                        typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {
    #pragma HLS INLINE
    static_assert(CONFIG_T::n_slots == CONFIG_T::n_mult * CONFIG_T::reuse_factor, "n_slots must be n_mult * reuse_factor");
    CONFIG_T::template kernel<data_T, res_T, CONFIG_T>::dense(data, res, weights, biases);
}

// io_stream: the same kernel on the gathered input vector (nnet_stream_vector.h).
template <class data_T, class res_T, typename CONFIG_T>
void block_sparse_dense(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                        typename CONFIG_T::weight_t weights[CONFIG_T::n_slots],
                        typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {
    typename data_T::value_type data[CONFIG_T::n_in];
    #pragma HLS ARRAY_PARTITION variable=data complete dim=1
    typename res_T::value_type res[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=res complete dim=1
    read_vector<data_T, CONFIG_T::n_in>(data_stream, data);
    block_sparse_dense<typename data_T::value_type, typename res_T::value_type, CONFIG_T>(data, res, weights, biases);
    write_vector<res_T, CONFIG_T::n_out>(res, res_stream);
}

} // namespace nnet

#endif
