// Coarse-grain block-sparse dense layer (CGS), io_parallel: an output-stationary ("gather")
// time-multiplexed MAC engine.
//
// It mirrors the RTL design flow/rtl/engine.py driven by the `gather` schedule of
// flow/schedule.py (measured by bench/bench_engine.py): the same schedule, stored the same way.
// The flow computes the tables from the reference's packed kept blocks
// (flow/runtime/ref_block_sparse.py); this header only walks them.
//
// - n_lanes lanes of block_out multipliers, one multiplier per column of a block (n_mult in all),
//   reuse_factor cycles at II=1. In cycle t all multipliers of lane l read the same input.
// - Segments: a lane works through the kept blocks of one output block-column for seg_len cycles;
//   during segment s multiplier l*block_out + j adds into output seg_block[l][s]*block_out + j only,
//   so each multiplier writes one output per segment (no write demultiplexer per multiplier).
// - Runs: the inputs of a lane come in runs of run_len consecutive rows; run r starts at input
//   run_start[l][r]*run_len, so one stored number names run_len cycles' inputs.
// - Padding: a block-column whose kept rows do not fill whole segments, and lanes beyond the kept
//   work, hold zero weights; they add 0 (the stored input index there is arbitrary but in range).
// Weights: bank m = weights[m*reuse_factor .. m*reuse_factor + reuse_factor - 1], word t is what
// multiplier m multiplies in cycle t. Binary/ternary kernels arrive as 2-bit codes -1/0/+1 whose
// step is the layer's alpha (weight_t = ap_fixed<2, 2 + log2 alpha>).
// Row- and column-wise masks: the tables name only kept blocks, so a dropped input is never read
// and a dropped output gets no multiplier (it is its bias).
//
// The input select comes from the run_start ROM: HLS sees a ROM read feeding a multiplexer over
// data[]; the RTL model folds the constant ROM into the multiplexer, as synthesis does.
#ifndef NNET_BLOCK_SPARSE_DENSE_H_
#define NNET_BLOCK_SPARSE_DENSE_H_

#include "nnet_common.h"
#include "nnet_stream_vector.h"

namespace nnet {

struct block_sparse_dense_config {
    typedef float accum_t;
    typedef float bias_t;
    typedef float weight_t;
    typedef unsigned run_t;
    typedef unsigned seg_t;

    static const unsigned n_in = 8;
    static const unsigned n_out = 8;
    static const unsigned block_in = 1;
    static const unsigned block_out = 1;
    static const unsigned reuse_factor = 1;
    static const unsigned n_lanes = 8;
    static const unsigned n_mult = 8;  // n_lanes * block_out
    static const unsigned seg_len = 1; // cycles per output block-column segment; divides reuse_factor
    static const unsigned run_len = 1; // consecutive inputs per run_start entry; divides seg_len
    static const unsigned n_runs = 1;  // reuse_factor / run_len, per lane
    static const unsigned n_segs = 1;  // reuse_factor / seg_len, per lane
    static const unsigned n_slots = 8; // n_mult * reuse_factor stored weights, padding included
};

template <class data_T, class res_T, typename CONFIG_T>
void block_sparse_dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                        typename CONFIG_T::weight_t weights[CONFIG_T::n_slots],
                        typename CONFIG_T::run_t run_start[CONFIG_T::n_lanes * CONFIG_T::n_runs],
                        typename CONFIG_T::seg_t seg_block[CONFIG_T::n_lanes * CONFIG_T::n_segs],
                        typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {
    static_assert(CONFIG_T::n_mult == CONFIG_T::n_lanes * CONFIG_T::block_out, "n_mult must be n_lanes * block_out");
    static_assert(CONFIG_T::n_slots == CONFIG_T::n_mult * CONFIG_T::reuse_factor, "n_slots must be n_mult * reuse_factor");
    static_assert(CONFIG_T::n_runs * CONFIG_T::run_len == CONFIG_T::reuse_factor &&
                      CONFIG_T::n_segs * CONFIG_T::seg_len == CONFIG_T::reuse_factor,
                  "runs and segments must tile the reuse_factor cycles");
    static_assert(CONFIG_T::n_in % CONFIG_T::block_in == 0 && CONFIG_T::n_out % CONFIG_T::block_out == 0,
                  "blocks must tile the kernel");
    const unsigned bo = CONFIG_T::block_out;
    const unsigned rf = CONFIG_T::reuse_factor;

    #pragma HLS function_instantiate variable=weights,run_start,seg_block,biases
    // One bank (ROM word of n_mult weights) per cycle; per lane one run_start and one seg_block.
    #pragma HLS ARRAY_RESHAPE variable=weights block factor=CONFIG_T::n_mult
    #pragma HLS ARRAY_RESHAPE variable=run_start block factor=CONFIG_T::n_lanes
    #pragma HLS ARRAY_RESHAPE variable=seg_block block factor=CONFIG_T::n_lanes
    #pragma HLS ARRAY_PARTITION variable=biases complete

    typename CONFIG_T::accum_t acc[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=acc complete

InitAccum:
    for (unsigned o = 0; o < CONFIG_T::n_out; o++) {
        #pragma HLS UNROLL
        acc[o] = (typename CONFIG_T::accum_t)biases[o];
    }

ReuseLoop:
    for (unsigned t = 0; t < rf; t++) {
        #pragma HLS PIPELINE II=1 rewind
    LaneLoop:
        for (unsigned l = 0; l < CONFIG_T::n_lanes; l++) {
            #pragma HLS UNROLL
            const unsigned in = (unsigned)run_start[l * CONFIG_T::n_runs + t / CONFIG_T::run_len] * CONFIG_T::run_len +
                                t % CONFIG_T::run_len;
            const unsigned cb = seg_block[l * CONFIG_T::n_segs + t / CONFIG_T::seg_len];
            const data_T x = data[in]; // shared by the lane's block_out multipliers
        ColLoop:
            for (unsigned j = 0; j < bo; j++) {
                #pragma HLS UNROLL
                // Full-precision product; the flow sizes accum_t so this cast and the sum are exact.
                acc[cb * bo + j] += (typename CONFIG_T::accum_t)(x * weights[(l * bo + j) * rf + t]);
            }
        }
    }

Result:
    for (unsigned o = 0; o < CONFIG_T::n_out; o++) {
        #pragma HLS UNROLL
        res[o] = (res_T)acc[o];
    }
}

// io_stream: the same kernel on the gathered input vector (nnet_stream_vector.h).
template <class data_T, class res_T, typename CONFIG_T>
void block_sparse_dense(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                        typename CONFIG_T::weight_t weights[CONFIG_T::n_slots],
                        typename CONFIG_T::run_t run_start[CONFIG_T::n_lanes * CONFIG_T::n_runs],
                        typename CONFIG_T::seg_t seg_block[CONFIG_T::n_lanes * CONFIG_T::n_segs],
                        typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {
    typename data_T::value_type data[CONFIG_T::n_in];
    #pragma HLS ARRAY_PARTITION variable=data complete
    typename res_T::value_type res[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=res complete
    read_vector<data_T, CONFIG_T::n_in>(data_stream, data);
    block_sparse_dense<typename data_T::value_type, typename res_T::value_type, CONFIG_T>(data, res, weights, run_start,
                                                                                        seg_block, biases);
    write_vector<res_T, CONFIG_T::n_out>(res, res_stream);
}

} // namespace nnet

#endif
