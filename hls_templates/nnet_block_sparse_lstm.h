// HCGS block-sparse quantized LSTM, io_parallel (flow/runtime/ref_lstm.py is its exact reference).
//
// Storage: per kernel (W, U) the weight banks of its schedule, [gate][multiplier][cycle] (zero in
// padding slots): the kept blocks of the four gates i, f, g, o, one word per cycle.
//
// Per time step (h = c = 0 before the first):
//   z = b + x_t W + h U            accum_t: sized exact by the flow, so the order of the sums is free
//   i, f, o = hard_sigmoid(z)      gate_t    (nnet::hard_sigmoid, slope = shift = 0.5)
//   g = hard_tanh(z_g)             act_t     (nnet::hard_tanh)
//   c = (cell_t)(f c + i g)        the sum exact in cell_sum_t; cell_t rounds/saturates
//   h = (res_T)(o hard_tanh(c))    the product exact in hidden_product_t; res_T rounds/saturates
// MAC: ONE loop of reuse_factor cycles at II=1 per step computes x_t W and h U together. It is
// generated per layer (flow/hls/lstm_emit.py, written by hls4ml into nnet_utils/nnet_code_gen.h
// as block_sparse_lstm_<index>) from the static structure of flow/runtime/lstm_engine.py: the
// gather schedule of each kernel's kept blocks, tiled over the four gates; input selects as
// constant case tables of the cycle, one weight word per bank and cycle (the ROMs reshaped by
// banks), per gate-sum source lists gated by constant comparisons of the cycle. No index is
// stored. The layer's config names it as kernel<...>::mac.
#ifndef NNET_BLOCK_SPARSE_LSTM_H_
#define NNET_BLOCK_SPARSE_LSTM_H_

#include "nnet_activation.h"
#include "nnet_common.h"

namespace nnet {

struct block_sparse_lstm_config {
    typedef float weight_t;
    typedef float recurrent_t;
    typedef float bias_t;
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
    static const unsigned reuse_factor = 1;
    static const unsigned n_wslots = 64; // 4 gates x W's multipliers x reuse_factor
    static const unsigned n_uslots = 64; // 4 gates x U's multipliers x reuse_factor

    // the generated step MAC (block_sparse_lstm_<index>): z += x W + h U
    template <class data_T, class res_T, class CONFIG_T> struct kernel {
        static void mac(data_T x[CONFIG_T::n_in], res_T h[CONFIG_T::units],
                        typename CONFIG_T::weight_t w[CONFIG_T::n_wslots],
                        typename CONFIG_T::recurrent_t u[CONFIG_T::n_uslots],
                        typename CONFIG_T::accum_t z[4 * CONFIG_T::units]) {}
    };
};

template <class data_T, class res_T, typename CONFIG_T>
void block_sparse_lstm(data_T data[CONFIG_T::n_steps * CONFIG_T::n_in],
                       res_T res[CONFIG_T::return_sequences ? CONFIG_T::n_steps * CONFIG_T::units : CONFIG_T::units],
                       typename CONFIG_T::weight_t w[CONFIG_T::n_wslots],
                       typename CONFIG_T::recurrent_t u[CONFIG_T::n_uslots],
                       typename CONFIG_T::bias_t b[4 * CONFIG_T::units]) {
    const unsigned nu = CONFIG_T::units;
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
        // x_t: a local copy of the step's inputs (as hls4ml's LSTM), read at constant indices by the MAC
        data_T x[CONFIG_T::n_in];
        #pragma HLS ARRAY_PARTITION variable=x complete
    InputCopy:
        for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
            #pragma HLS UNROLL
            x[i] = data[s * CONFIG_T::n_in + i];
        }
        typename CONFIG_T::accum_t z[4 * CONFIG_T::units];
        #pragma HLS ARRAY_PARTITION variable=z complete
    InitAccum:
        for (unsigned j = 0; j < 4 * nu; j++) {
            #pragma HLS UNROLL
            z[j] = (typename CONFIG_T::accum_t)b[j];
        }
        CONFIG_T::template kernel<data_T, res_T, CONFIG_T>::mac(x, h, w, u, z);

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
