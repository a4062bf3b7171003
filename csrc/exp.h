/*
 * exp.h -- e^x in plain arithmetic, so that the loops calling it vectorise.
 *
 * libm's exp is a function call the compiler cannot vectorise (glibc's
 * vector variants need -ffast-math); a softmax over 10,000 rows of 10
 * spent a fifth of a digits prediction in it. These are inlined instead:
 *   x = k ln 2 + r, k = round(x / ln 2), |r| <= ln 2 / 2  (Cody-Waite: ln 2
 *   in two parts, the first with trailing zeros so that k * ln2_hi is exact)
 *   e^r = 1 + (r + r^2 q(r)), q = 1/2! + r/3! + ... (Taylor: to r^13 in
 *   double, r^7 in float; truncation below a tenth of an ulp)
 *   e^x = e^r 2^k, 2^k built in the exponent bits (as 2^(k -/+ d) 2^(+/-d)
 *   near the ends of the range, so that no factor overflows and a
 *   subnormal result rounds once).
 * Error under 1.1 ulp (libm's: 0.5); exp(0) = 1 exactly, exp(-inf) = 0,
 * exp(inf) = inf, exp(NaN) = NaN, overflow to inf, underflow to 0
 * (tests/test_kernels.py checks these against numpy).
 */
#ifndef CNNBP_EXP_H
#define CNNBP_EXP_H
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline double cnnbp_f64_from_bits(int64_t i) { double d; memcpy(&d, &i, 8); return d; }
static inline int64_t cnnbp_f64_bits(double d) { int64_t i; memcpy(&i, &d, 8); return i; }
static inline float cnnbp_f32_from_bits(int32_t i) { float f; memcpy(&f, &i, 4); return f; }
static inline int32_t cnnbp_f32_bits(float f) { int32_t i; memcpy(&i, &f, 4); return i; }

static inline double cnnbp_exp_f64(double x)
{
    const double hi = 709.782712893384, lo = -745.1332191019412;  /* e^hi < DBL_MAX */
    const double shift = 0x1.8p52;  /* (y + shift) - shift rounds y to an integer */
    const double ln2_hi = 0x1.62e42fefa3800p-1, ln2_lo = 0x1.ef35793c76730p-45;
    const double xc = x > hi ? hi : (x < lo ? lo : x);
    const double k = (xc * 1.4426950408889634 + shift) - shift;
    const double r = (xc - k * ln2_hi) - k * ln2_lo;
    /* q in Estrin's scheme: a short dependency chain, so iterations overlap */
    const double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    const double a0 = 0.5 + r * (1.0 / 6), a1 = 1.0 / 24 + r * (1.0 / 120);
    const double a2 = 1.0 / 720 + r * (1.0 / 5040), a3 = 1.0 / 40320 + r * (1.0 / 362880);
    const double a4 = 1.0 / 3628800 + r * (1.0 / 39916800);
    const double a5 = 1.0 / 479001600 + r * (1.0 / 6227020800);
    const double q = (a0 + r2 * a1) + r4 * (a2 + r2 * a3) + r8 * (a4 + r2 * a5);
    const double p = 1.0 + (r + r2 * q);
    const double d = k > 1000 ? -64.0 : (k < -1000 ? 64.0 : 0.0);
    const int64_t e = cnnbp_f64_bits(k + d + (1023.0 + shift)) - cnnbp_f64_bits(shift);
    double y = p * cnnbp_f64_from_bits(e << 52);
    y = d != 0 ? y * (d > 0 ? 0x1p-64 : 0x1p64) : y;
    y = x > hi ? (double)INFINITY : y;
    return x < lo ? 0.0 : y;
}

static inline float cnnbp_exp_f32(float x)
{
    const float hi = 88.72283f, lo = -103.97208f;  /* e^hi < FLT_MAX */
    const float shift = 0x1.8p23f;
    const float ln2_hi = 0x1.62e4p-1f, ln2_lo = 0x1.7f7d1cp-20f;
    const float xc = x > hi ? hi : (x < lo ? lo : x);
    const float k = (xc * 1.44269504f + shift) - shift;
    const float r = (xc - k * ln2_hi) - k * ln2_lo;
    const float r2 = r * r;
    const float q = (0.5f + r * (1.0f / 6)) + r2 * ((1.0f / 24 + r * (1.0f / 120))
                    + r2 * (1.0f / 720 + r * (1.0f / 5040)));
    const float p = 1.0f + (r + r2 * q);
    const float d = k > 100 ? -32.0f : (k < -100 ? 32.0f : 0.0f);
    const int32_t e = cnnbp_f32_bits(k + d + (127.0f + shift)) - cnnbp_f32_bits(shift);
    float y = p * cnnbp_f32_from_bits(e << 23);
    y = d != 0 ? y * (d > 0 ? 0x1p-32f : 0x1p32f) : y;
    y = x > hi ? INFINITY : y;
    return x < lo ? 0.0f : y;
}

#endif
