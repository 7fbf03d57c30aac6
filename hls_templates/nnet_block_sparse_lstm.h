// HCGS block-sparse quantized LSTM, io_parallel (flow/runtime/ref_lstm.py is its exact reference).
//
// Storage, as the reference packs it: per kernel the kept blocks of each gate i, f, g, o
// (w[g][k][bi][bo], kept block k of input block-row k / kept_per_row) and ONE output-block index
// per kept block, shared by the four gates (one index stream drives four weight streams).
//
// Per time step (h = c = 0 before the first):
//   z = b + x_t W + h U            accum_t: sized exact by the flow, so the order of the sums is free
//   i, f, o = hard_sigmoid(z)      gate_t    (nnet::hard_sigmoid, slope = shift = 0.5)
//   g = hard_tanh(z_g)             act_t     (nnet::hard_tanh)
//   c = (cell_t)(f c + i g)        the sum exact in cell_sum_t; cell_t rounds/saturates
//   h = (res_T)(o hard_tanh(c))    the product exact in hidden_product_t; res_T rounds/saturates
// MAC: reuse_factor cycles per step; in cycle t lane l takes kept block l * reuse_factor + t of W
// (and of U), the bi x bo x 4 products of that block (lanes past the last kept block idle).
#ifndef NNET_BLOCK_SPARSE_LSTM_H_
#define NNET_BLOCK_SPARSE_LSTM_H_

#include "nnet_activation.h"
#include "nnet_common.h"

namespace nnet {

struct block_sparse_lstm_config {
    typedef float weight_t;
    typedef float recurrent_t;
    typedef float bias_t;
    typedef unsigned index_t;
    typedef unsigned rindex_t;
    typedef float accum_t;
    typedef float gate_t;
    typedef float act_t;
    typedef float cell_sum_t;
    typedef float cell_t;
    typedef float hidden_product_t;

    static const unsigned n_in = 4;
    static const unsigned n_steps = 1;
    static const unsigned units = 4;
    static const bool return_sequences = false;
    static const unsigned block_in = 1;
    static const unsigned block_out = 1;
    static const unsigned rblock_in = 1;
    static const unsigned rblock_out = 1;
    static const unsigned n_kept = 16;
    static const unsigned n_rkept = 16;
    static const unsigned kept_per_row = 4;
    static const unsigned rkept_per_row = 4;
    static const unsigned reuse_factor = 1;
    static const unsigned n_lanes = 16;  // ceil(n_kept / reuse_factor)
    static const unsigned n_rlanes = 16; // ceil(n_rkept / reuse_factor)
};

// z[g * units + o] += sum over the kept blocks of in[row] * w: one kernel (W with x_t or U with h).
template <class in_T, class w_T, class idx_T, class acc_T, unsigned n_kept, unsigned n_lanes, unsigned bi, unsigned bo,
          unsigned kept_per_row, unsigned units, unsigned rf>
void block_sparse_lstm_mac(in_T in[], w_T w[4 * n_kept * bi * bo], idx_T index[n_kept], acc_T z[4 * units]) {
    #pragma HLS INLINE
ReuseLoop:
    for (unsigned t = 0; t < rf; t++) {
        #pragma HLS PIPELINE II=1
    LaneLoop:
        for (unsigned l = 0; l < n_lanes; l++) {
            #pragma HLS UNROLL
            const unsigned k = l * rf + t;
            if (k >= n_kept)
                continue; // the last lane's padding cycles
            const unsigned row = (k / kept_per_row) * bi;
            const unsigned col = (unsigned)index[k] * bo; // one index for the four gates
        GateLoop:
            for (unsigned g = 0; g < 4; g++) {
                #pragma HLS UNROLL
            RowLoop:
                for (unsigned i = 0; i < bi; i++) {
                    #pragma HLS UNROLL
                ColLoop:
                    for (unsigned j = 0; j < bo; j++) {
                        #pragma HLS UNROLL
                        // full-precision product; accum_t holds every partial sum exactly
                        z[g * units + col + j] += (acc_T)(in[row + i] * w[((g * n_kept + k) * bi + i) * bo + j]);
                    }
                }
            }
        }
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void block_sparse_lstm(data_T data[CONFIG_T::n_steps * CONFIG_T::n_in],
                       res_T res[CONFIG_T::return_sequences ? CONFIG_T::n_steps * CONFIG_T::units : CONFIG_T::units],
                       typename CONFIG_T::weight_t w[4 * CONFIG_T::n_kept * CONFIG_T::block_in * CONFIG_T::block_out],
                       typename CONFIG_T::index_t w_index[CONFIG_T::n_kept],
                       typename CONFIG_T::recurrent_t u[4 * CONFIG_T::n_rkept * CONFIG_T::rblock_in * CONFIG_T::rblock_out],
                       typename CONFIG_T::rindex_t u_index[CONFIG_T::n_rkept],
                       typename CONFIG_T::bias_t b[4 * CONFIG_T::units]) {
    const unsigned nu = CONFIG_T::units;
    static_assert(CONFIG_T::n_kept > 0 && CONFIG_T::n_rkept > 0, "every kernel keeps at least one block per block-row");
    static_assert(CONFIG_T::n_lanes * CONFIG_T::reuse_factor >= CONFIG_T::n_kept &&
                      CONFIG_T::n_rlanes * CONFIG_T::reuse_factor >= CONFIG_T::n_rkept,
                  "the lanes must cover the kept blocks in reuse_factor cycles");
    #pragma HLS function_instantiate variable=w,w_index,u,u_index,b
    #pragma HLS ARRAY_PARTITION variable=b complete

    res_T h[CONFIG_T::units];
    typename CONFIG_T::cell_t c[CONFIG_T::units];
    #pragma HLS ARRAY_PARTITION variable=h complete
    #pragma HLS ARRAY_PARTITION variable=c complete
InitState:
    for (unsigned j = 0; j < nu; j++) {
        #pragma HLS UNROLL
        h[j] = 0;
        c[j] = 0;
    }

StepLoop:
    for (unsigned s = 0; s < CONFIG_T::n_steps; s++) {
        // steps depend on each other through h and c: one after the other
        typename CONFIG_T::accum_t z[4 * CONFIG_T::units];
        #pragma HLS ARRAY_PARTITION variable=z complete
    InitAccum:
        for (unsigned j = 0; j < 4 * nu; j++) {
            #pragma HLS UNROLL
            z[j] = (typename CONFIG_T::accum_t)b[j];
        }
        block_sparse_lstm_mac<data_T, typename CONFIG_T::weight_t, typename CONFIG_T::index_t, typename CONFIG_T::accum_t,
                              CONFIG_T::n_kept, CONFIG_T::n_lanes, CONFIG_T::block_in, CONFIG_T::block_out,
                              CONFIG_T::kept_per_row, CONFIG_T::units, CONFIG_T::reuse_factor>(
            &data[s * CONFIG_T::n_in], w, w_index, z);
        block_sparse_lstm_mac<res_T, typename CONFIG_T::recurrent_t, typename CONFIG_T::rindex_t,
                              typename CONFIG_T::accum_t, CONFIG_T::n_rkept, CONFIG_T::n_rlanes, CONFIG_T::rblock_in,
                              CONFIG_T::rblock_out, CONFIG_T::rkept_per_row, CONFIG_T::units, CONFIG_T::reuse_factor>(
            h, u, u_index, z);

        // gate order in z: i, f, g, o
        typename CONFIG_T::gate_t gi[CONFIG_T::units], gf[CONFIG_T::units], go[CONFIG_T::units];
        typename CONFIG_T::act_t gg[CONFIG_T::units], tc[CONFIG_T::units];
        #pragma HLS ARRAY_PARTITION variable=gi complete
        #pragma HLS ARRAY_PARTITION variable=gf complete
        #pragma HLS ARRAY_PARTITION variable=go complete
        #pragma HLS ARRAY_PARTITION variable=gg complete
        #pragma HLS ARRAY_PARTITION variable=tc complete
        typedef typename CONFIG_T::hard_config hard_config;
        hard_sigmoid<typename CONFIG_T::accum_t, typename CONFIG_T::gate_t, hard_config>(&z[0], gi);
        hard_sigmoid<typename CONFIG_T::accum_t, typename CONFIG_T::gate_t, hard_config>(&z[nu], gf);
        hard_tanh<typename CONFIG_T::accum_t, typename CONFIG_T::act_t, hard_config>(&z[2 * nu], gg);
        hard_sigmoid<typename CONFIG_T::accum_t, typename CONFIG_T::gate_t, hard_config>(&z[3 * nu], go);
    CellUpdate:
        for (unsigned j = 0; j < nu; j++) {
            #pragma HLS UNROLL
            const typename CONFIG_T::cell_sum_t sum = gf[j] * c[j] + gi[j] * gg[j]; // exact
            c[j] = sum;                                                                // cell_t: round, saturate
        }
        hard_tanh<typename CONFIG_T::cell_t, typename CONFIG_T::act_t, hard_config>(c, tc);
    HiddenUpdate:
        for (unsigned j = 0; j < nu; j++) {
            #pragma HLS UNROLL
            const typename CONFIG_T::hidden_product_t p = go[j] * tc[j]; // exact
            h[j] = p;                                                     // res_T: round, saturate
            if (CONFIG_T::return_sequences)
                res[s * nu + j] = h[j];
        }
    }
    if (!CONFIG_T::return_sequences) {
    Result:
        for (unsigned j = 0; j < nu; j++) {
            #pragma HLS UNROLL
            res[j] = h[j];
        }
    }
}

} // namespace nnet

#endif
