// Host-only stand-in for Vitis HLS's ap_axi_sdata.h, so the accelerator top compiles with g++
// for the C simulation here. Only the members the generated top uses; never on the Vitis HLS
// include path (Vitis HLS brings its own header, which defines the AXI4-Stream side channels).
#ifndef AP_AXI_SDATA_HOST_SHIM_H
#define AP_AXI_SDATA_HOST_SHIM_H
#include "ap_int.h"
template <int D, int U, int TI, int TD> struct ap_axiu {
    ap_uint<D> data;
    ap_uint<(D + 7) / 8> keep;
    ap_uint<(D + 7) / 8> strb;
    ap_uint<1> last;
};
#endif
