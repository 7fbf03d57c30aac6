// Coarse-grain block-sparse 2-D convolution (CGS/HCGS channel blocks), io_stream, channels last.
//
// hls4ml's line buffer (nnet::shift_line_buffer / kernel_shift_1d, ap_shift_reg rows of the padded
// input width; hls4ml inserts a ZeroPadding2D node before a padded convolution) with our
// time-multiplexed block-sparse kernel doing each output pixel's channel mixing over the kept blocks.
//
// Why not hls4ml's conv_2d_buffer_cl: it pipelines its pixel loop only for the Latency strategy; a
// PIPELINE II=reuse_factor around a kernel with its own pipelined ReuseLoop would unroll that loop
// (UG1399: every loop below a pipelined loop or function is unrolled), and without it every pixel
// costs the kernel's fill and flush. Here ONE loop, pipelined at II=1, runs the image's cycles: an
// input pixel enters at cycle t = 0 of its slot; a pixel that completes a window (an output pixel)
// keeps the slot for reuse_factor cycles t = 0 .. rf - 1 of the generated kernel, every other pixel
// for one. So a new output pixel starts every reuse_factor cycles and an image takes
//   out_pixels * reuse_factor + (in_pixels - out_pixels) cycles + the pipeline's depth
// (flow/runtime/ref_conv.py, BlockSparseConv2D.engine_estimate).
//
// The per-cycle kernel is generated per layer (flow/hls/block_sparse_emit.py emit_cycle, written by
// hls4ml into nnet_utils/nnet_code_gen.h as block_sparse_conv_<index>) from the same static
// structure as the dense kernel and the Verilog engine: input selects as constant case tables of t
// over the window (completely partitioned), one word of every weight bank per cycle (the ROM
// reshaped by banks), each accumulator updated at a constant index by its gated source list. The
// mult config names it as kernel<...>::cycle.
#ifndef NNET_BLOCK_SPARSE_CONV2D_H_
#define NNET_BLOCK_SPARSE_CONV2D_H_

#include "hls_stream.h"
#include "nnet_block_sparse_dense.h"
#include "nnet_common.h"
#include "nnet_conv2d.h"
#include "nnet_conv_stream.h"

namespace nnet {

// Cycles of the pixel loop per image (the trip count: it is a compile-time constant).
template <typename CONFIG_T> struct block_sparse_conv_cycles {
    static const unsigned in_pixels = CONFIG_T::in_height * CONFIG_T::in_width;
    static const unsigned out_pixels = CONFIG_T::out_height * CONFIG_T::out_width;
    static const unsigned value = out_pixels * CONFIG_T::mult_config::reuse_factor + (in_pixels - out_pixels);
};

template <class data_T, class res_T, typename CONFIG_T>
void block_sparse_conv_2d_cl(hls::stream<data_T> &data, hls::stream<res_T> &res,
                             typename CONFIG_T::mult_config::weight_t weights[CONFIG_T::mult_config::n_slots],
                             typename CONFIG_T::bias_t biases[CONFIG_T::n_filt]) {
    assert(CONFIG_T::pad_top == 0 && CONFIG_T::pad_bottom == 0 && CONFIG_T::pad_left == 0 && CONFIG_T::pad_right == 0);
    typedef typename CONFIG_T::mult_config mult_config;
    typedef typename mult_config::accum_t acc_t;
    typedef typename data_T::value_type in_t;
    static const unsigned rf = mult_config::reuse_factor;
    static const int lShiftX = CONFIG_T::filt_width - 1;
    static const int lShiftY = CONFIG_T::filt_height - 1;
    #pragma HLS ARRAY_PARTITION variable=biases complete dim=1

    // hls4ml's line buffer and window (as conv_2d_buffer_cl / compute_output_buffer_2d)
    static ap_shift_reg<in_t, CONFIG_T::in_width> line_buffer[MAX(CONFIG_T::filt_height - 1, 1)][CONFIG_T::n_chan];
    #pragma HLS ARRAY_PARTITION variable=line_buffer complete dim=2
    static in_t window[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan];
    #pragma HLS ARRAY_PARTITION variable=window complete
    acc_t acc[CONFIG_T::n_filt];
    #pragma HLS ARRAY_PARTITION variable=acc complete

    // position of the pixel in the window (hls4ml's counters), the cycle t of the kernel
    int pX = 0, pY = 0, sX = 0, sY = 0;
    unsigned t = 0;
    bool out_pixel = false;

PixelCycleLoop:
    for (unsigned n = 0; n < block_sparse_conv_cycles<CONFIG_T>::value; n++) {
        #pragma HLS PIPELINE II=1
        if (t == 0) { // a new input pixel
            if (CONFIG_T::filt_height > 1) {
                nnet::shift_line_buffer<data_T, CONFIG_T>(data.read(), line_buffer, window);
            } else {
                nnet::kernel_shift_1d<data_T, CONFIG_T>(data.read(), window);
            }
            out_pixel = (sX - lShiftX) == 0 && (sY - lShiftY) == 0 && pY > lShiftY - 1 && pX > lShiftX - 1;
            if (pX + 1 == (int)CONFIG_T::in_width) {
                pX = 0;
                sX = 0;
                if (pY + 1 == (int)CONFIG_T::in_height) {
                    pY = 0;
                    sY = 0;
                } else {
                    pY = pY + 1;
                    sY = ((sY - lShiftY) == 0) ? sY - (int)CONFIG_T::stride_height + 1 : sY + 1;
                }
            } else {
                pX = pX + 1;
                sX = ((sX - lShiftX) == 0) ? sX - (int)CONFIG_T::stride_width + 1 : sX + 1;
            }
        BiasInit:
            for (unsigned o = 0; o < CONFIG_T::n_filt; o++) {
                #pragma HLS UNROLL
                acc[o] = (acc_t)biases[o];
            }
        }
        CONFIG_T::mult_config::template kernel<in_t, typename CONFIG_T::mult_config>::cycle(window, t, weights, acc);
        if (out_pixel && t == rf - 1) {
            // each output cast once, with the output type's rounding and overflow
            res_T res_pack;
            PRAGMA_DATA_PACK(res_pack)
        CastLoop:
            for (unsigned o = 0; o < CONFIG_T::n_filt; o++) {
                #pragma HLS UNROLL
                res_pack[o] = (typename res_T::value_type)acc[o];
            }
            res.write(res_pack);
        }
        t = (out_pixel && t + 1 < rf) ? t + 1 : 0;
    }
}

} // namespace nnet

#endif
