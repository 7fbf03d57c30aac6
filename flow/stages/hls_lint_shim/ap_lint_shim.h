// hls_lint: stand-ins for the Xilinx arbitrary-precision types, enough for a syntax-level parse
// (the lint reads structure, pragmas and constants, never the arithmetic).
#ifndef HLS_LINT_AP_SHIM_H_
#define HLS_LINT_AP_SHIM_H_
enum ap_q_mode { AP_RND, AP_RND_ZERO, AP_RND_MIN_INF, AP_RND_INF, AP_RND_CONV, AP_TRN, AP_TRN_ZERO };
enum ap_o_mode { AP_SAT, AP_SAT_ZERO, AP_SAT_SYM, AP_WRAP, AP_WRAP_SM };
struct ap_lint_num {
    ap_lint_num() {}
    template <class T> ap_lint_num(const T &) {}
    operator double() const { return 0; }
    ap_lint_num range(int, int) const { return *this; }
    ap_lint_num range() const { return *this; }
    ap_lint_num operator[](int) const { return *this; }
    template <class T> ap_lint_num &operator=(const T &) { return *this; }
    template <class T> ap_lint_num &operator+=(const T &) { return *this; }
    template <class T> ap_lint_num &operator-=(const T &) { return *this; }
    template <class T> ap_lint_num &operator*=(const T &) { return *this; }
    template <class T> ap_lint_num &operator/=(const T &) { return *this; }
    template <class T> ap_lint_num &operator|=(const T &) { return *this; }
    template <class T> ap_lint_num &operator&=(const T &) { return *this; }
    template <class T> ap_lint_num &operator^=(const T &) { return *this; }
    ap_lint_num &operator<<=(int) { return *this; }
    ap_lint_num &operator>>=(int) { return *this; }
    ap_lint_num operator<<(int) const { return *this; }
    ap_lint_num operator>>(int) const { return *this; }
    ap_lint_num operator<<(unsigned) const { return *this; }
    ap_lint_num operator>>(unsigned) const { return *this; }
    int to_int() const { return 0; }
    double to_double() const { return 0; }
    int length() const { return 0; }
};
template <int W, int I = W, ap_q_mode Q = AP_TRN, ap_o_mode O = AP_WRAP, int N = 0> struct ap_fixed : ap_lint_num {
    ap_fixed() {}
    template <class T> ap_fixed(const T &) {}
    static const int width = W;
    static const int iwidth = I;
};
template <int W, int I = W, ap_q_mode Q = AP_TRN, ap_o_mode O = AP_WRAP, int N = 0> struct ap_ufixed : ap_lint_num {
    ap_ufixed() {}
    template <class T> ap_ufixed(const T &) {}
    static const int width = W;
    static const int iwidth = I;
};
template <int W> struct ap_int : ap_lint_num {
    ap_int() {}
    template <class T> ap_int(const T &) {}
    static const int width = W;
};
template <int W> struct ap_uint : ap_lint_num {
    ap_uint() {}
    template <class T> ap_uint(const T &) {}
    static const int width = W;
};
#endif
