// Coarse-grain block-sparse dense layer (CGS), io_parallel.
//
// Stores only the kept blocks and one output-block index per kept block; computes only on
// them. Storage format (shared with flow/runtime/ref_block_sparse.py, which is the reference):
//   weights[b * block_in * block_out + i * block_out + o]  kept block b, row i, column o
//   block_index[b]                                         output block of kept block b
// Kept blocks are ordered by input block-row; every row keeps kept_per_row blocks, so the input
// block-row of block b is b / kept_per_row and needs no storage (equal fan-out, static schedule).
//
// Time-multiplexed MAC engine, as in the CGS hardware: n_kept / reuse_factor multipliers, each
// reading its own weight bank (ARRAY_RESHAPE block), reuse_factor cycles at II=1.
#ifndef NNET_BLOCK_SPARSE_DENSE_H_
#define NNET_BLOCK_SPARSE_DENSE_H_

#include "nnet_common.h"

namespace nnet {

struct block_sparse_dense_config {
    typedef float accum_t;
    typedef float bias_t;
    typedef float weight_t;
    typedef unsigned index_t;

    static const unsigned n_in = 8;
    static const unsigned n_out = 8;
    static const unsigned block_in = 1;
    static const unsigned block_out = 1;
    static const unsigned kept_per_row = 1;
    static const unsigned n_kept_blocks = 8;
    static const unsigned n_kept = 8; // kept weights = n_kept_blocks * block_in * block_out
    static const unsigned reuse_factor = 1;
    static const unsigned n_mult = 8; // multipliers = n_kept / reuse_factor
};

template <class data_T, class res_T, typename CONFIG_T>
void block_sparse_dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                        typename CONFIG_T::weight_t weights[CONFIG_T::n_kept],
                        typename CONFIG_T::index_t block_index[CONFIG_T::n_kept_blocks],
                        typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {
    static_assert(CONFIG_T::n_kept % CONFIG_T::reuse_factor == 0, "reuse_factor must divide the kept weight count");
    static_assert(CONFIG_T::n_mult * CONFIG_T::reuse_factor == CONFIG_T::n_kept, "n_mult must be n_kept / reuse_factor");
    static_assert(CONFIG_T::n_in % CONFIG_T::block_in == 0 && CONFIG_T::n_out % CONFIG_T::block_out == 0,
                  "blocks must tile the kernel");
    const unsigned block_size = CONFIG_T::block_in * CONFIG_T::block_out;

    #pragma HLS function_instantiate variable=weights,block_index,biases
    #pragma HLS ARRAY_RESHAPE variable=weights block factor=CONFIG_T::n_mult
    #pragma HLS ARRAY_PARTITION variable=block_index complete
    #pragma HLS ARRAY_PARTITION variable=biases complete

    typename CONFIG_T::accum_t acc[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=acc complete

InitAccum:
    for (unsigned o = 0; o < CONFIG_T::n_out; o++) {
        #pragma HLS UNROLL
        acc[o] = (typename CONFIG_T::accum_t)biases[o];
    }

ReuseLoop:
    for (unsigned ir = 0; ir < CONFIG_T::reuse_factor; ir++) {
        #pragma HLS PIPELINE II=1 rewind
    MultLoop:
        for (unsigned im = 0; im < CONFIG_T::n_mult; im++) {
            #pragma HLS UNROLL
            // Multiplier im reads word ir of its own bank.
            const unsigned w = ir + CONFIG_T::reuse_factor * im;
            const unsigned b = w / block_size;
            const unsigned r = w % block_size;
            const unsigned in = (b / CONFIG_T::kept_per_row) * CONFIG_T::block_in + r / CONFIG_T::block_out;
            const unsigned out = (unsigned)block_index[b] * CONFIG_T::block_out + r % CONFIG_T::block_out;
            // Full-precision product; the flow sizes accum_t so this cast and the sum are exact.
            acc[out] += (typename CONFIG_T::accum_t)(data[in] * weights[w]);
        }
    }

Result:
    for (unsigned o = 0; o < CONFIG_T::n_out; o++) {
        #pragma HLS UNROLL
        res[o] = (res_T)acc[o];
    }
}

} // namespace nnet

#endif
