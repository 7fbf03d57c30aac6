// Structured sparse ternary (SST) dense layer, io_parallel, multiplication-free datapath.
//
// Weights are t * scale, t in {-1, 0, +1} with at most `nonzeros` (K) non-zeros in every group of
// `group` (N) consecutive inputs of an output; each (output, group) is stored as one codeword, the
// rank of its pattern (flow/runtime/sst_code.py). Nothing else of the kernel is stored.
//
// - Work item w = o * n_groups + g (output o, group g); n_dec decoders, reuse_factor cycles at
//   II=1: decoder d takes item d * reuse_factor + t in cycle t (items past n_work hold codeword 0).
// - Decode: pattern[code * K + k] is +(p + 1) (add input g * N + p), -(p + 1) (subtract it) or 0.
//   Sums are additions and subtractions of the selected inputs only: no multiplier touches data.
// - ApplyScale, once per output after the sums: acc = sum * scale + bias. A power-of-two scale
//   (flow's default quantized_po2) is a constant shift; a fixed-point scale a constant product.
// The flow sizes sum_t and accum_t so that every sum and the scaled result are exact.
#ifndef NNET_SST_DENSE_H_
#define NNET_SST_DENSE_H_

#include "nnet_common.h"
#include "nnet_stream_vector.h"

namespace nnet {

struct sst_dense_config {
    typedef unsigned code_t;
    typedef int pattern_t;
    typedef float scale_t;
    typedef float bias_t;
    typedef float sum_t;
    typedef float accum_t;

    static const unsigned n_in = 8;
    static const unsigned n_out = 1;
    static const unsigned group = 8;     // N
    static const unsigned nonzeros = 2;  // K
    static const unsigned n_groups = 1;  // n_in / group
    static const unsigned n_patterns = 129;
    static const unsigned reuse_factor = 1;
    static const unsigned n_work = 1; // n_out * n_groups
    static const unsigned n_dec = 1;  // ceil(n_work / reuse_factor)
};

template <class data_T, class res_T, typename CONFIG_T>
void sst_dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
               typename CONFIG_T::code_t codes[CONFIG_T::n_dec * CONFIG_T::reuse_factor],
               typename CONFIG_T::pattern_t pattern[CONFIG_T::n_patterns * CONFIG_T::nonzeros],
               typename CONFIG_T::scale_t scale[CONFIG_T::n_out], typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {
    static_assert(CONFIG_T::n_groups * CONFIG_T::group == CONFIG_T::n_in, "groups must tile the inputs");
    static_assert(CONFIG_T::n_dec * CONFIG_T::reuse_factor >= CONFIG_T::n_work, "decoders must cover the work");
    const unsigned rf = CONFIG_T::reuse_factor;

    #pragma HLS function_instantiate variable=codes,scale,biases
    // one ROM word of n_dec codewords per cycle; the pattern ROM is read by every decoder slot
    #pragma HLS ARRAY_RESHAPE variable=codes block factor=CONFIG_T::n_dec
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=biases complete

    typename CONFIG_T::sum_t sum[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=sum complete

InitSum:
    for (unsigned o = 0; o < CONFIG_T::n_out; o++) {
        #pragma HLS UNROLL
        sum[o] = 0;
    }

ReuseLoop:
    for (unsigned t = 0; t < rf; t++) {
        #pragma HLS PIPELINE II=1 rewind
    DecoderLoop:
        for (unsigned d = 0; d < CONFIG_T::n_dec; d++) {
            #pragma HLS UNROLL
            const unsigned w = d * rf + t;
            if (w < CONFIG_T::n_work) {
                const unsigned o = w / CONFIG_T::n_groups;
                const unsigned base = (w % CONFIG_T::n_groups) * CONFIG_T::group;
                const unsigned code = codes[w];
                typename CONFIG_T::sum_t part = 0;
            SlotLoop:
                for (unsigned k = 0; k < CONFIG_T::nonzeros; k++) {
                    #pragma HLS UNROLL
                    const int p = pattern[code * CONFIG_T::nonzeros + k];
                    if (p > 0) {
                        part += data[base + p - 1];
                    } else if (p < 0) {
                        part -= data[base - p - 1];
                    }
                }
                sum[o] += part;
            }
        }
    }

ApplyScale:
    for (unsigned o = 0; o < CONFIG_T::n_out; o++) {
        #pragma HLS UNROLL
        typename CONFIG_T::accum_t acc = (typename CONFIG_T::accum_t)(sum[o] * scale[o]);
        acc += (typename CONFIG_T::accum_t)biases[o];
        res[o] = (res_T)acc;
    }
}

// io_stream: the same kernel on the gathered input vector (nnet_stream_vector.h).
template <class data_T, class res_T, typename CONFIG_T>
void sst_dense(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
               typename CONFIG_T::code_t codes[CONFIG_T::n_dec * CONFIG_T::reuse_factor],
               typename CONFIG_T::pattern_t pattern[CONFIG_T::n_patterns * CONFIG_T::nonzeros],
               typename CONFIG_T::scale_t scale[CONFIG_T::n_out], typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {
    typename data_T::value_type data[CONFIG_T::n_in];
    #pragma HLS ARRAY_PARTITION variable=data complete
    typename res_T::value_type res[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=res complete
    read_vector<data_T, CONFIG_T::n_in>(data_stream, data);
    sst_dense<typename data_T::value_type, typename res_T::value_type, CONFIG_T>(data, res, codes, pattern, scale, biases);
    write_vector<res_T, CONFIG_T::n_out>(res, res_stream);
}

} // namespace nnet

#endif
