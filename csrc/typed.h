/*
 * typed.h -- instantiate a kernel file for float and double.
 *
 * A kernel file includes this header with CNNBP_BODY naming itself; this
 * header then includes that file twice more, once with T = float and once
 * with T = double, so each kernel is written once and compiled twice.
 * Inside a body: T is the element type, FN(name) the suffixed function name
 * (cnnbp_name_f32 / cnnbp_name_f64), and EXP (exp.h's), EXPM1, LOG1P, ERF, LOG, TANH, SQRT,
 * FABS, T_EPS the matching math functions and machine epsilon, and T_TINY = smallest
 * normal / epsilon, below which kernels flush values to zero (see FLUSH).
 */
#include <float.h>
#include <math.h>
#include <string.h>
#include "kernels.h"
#include "exp.h"

/* Memory-bound loops get an AVX2 clone chosen at load time (GCC's ifunc
 * dispatch), so a portable wheel still runs 8 floats per instruction on
 * AVX2 machines. No FMA: a * b + c keeps numpy's two roundings. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CNNBP_VECTOR_LOOP __attribute__((target_clones("avx2", "default")))
#else
#define CNNBP_VECTOR_LOOP
#endif

/* Values that only ever shrink (probabilities of confident predictions, the
 * optimizer's decaying moments) sink into subnormal numbers, on which x86
 * arithmetic is far slower (figures: docs/performance.md, "Figures behind the code"). They carry no
 * information at that size, so they are set to zero: a change below
 * 1e-31 (float) or 1e-292 (double), invisible next to round-off. */
#define FLUSH(x) (FABS(x) < T_TINY ? (T)0 : (x))

#define CNNBP_CAT_(a, b) a##_##b
#define CNNBP_CAT(a, b) CNNBP_CAT_(a, b)
#define FN(name) CNNBP_CAT(cnnbp_##name, S)

#define T float
#define S f32
#define EXP cnnbp_exp_f32  /* exp.h: inlined, so loops over it vectorise */
#define EXPM1 expm1f
#define LOG1P log1pf
#define ERF erff
#define LOG logf
#define TANH tanhf
#define SQRT sqrtf
#define FABS fabsf
#define T_EPS FLT_EPSILON
#define T_TINY (FLT_MIN / FLT_EPSILON)
#include CNNBP_BODY
#undef T
#undef S
#undef EXP
#undef EXPM1
#undef LOG1P
#undef ERF
#undef LOG
#undef TANH
#undef SQRT
#undef FABS
#undef T_EPS
#undef T_TINY

#define T double
#define S f64
#define EXP cnnbp_exp_f64
#define EXPM1 expm1
#define LOG1P log1p
#define ERF erf
#define LOG log
#define TANH tanh
#define SQRT sqrt
#define FABS fabs
#define T_EPS DBL_EPSILON
#define T_TINY (DBL_MIN / DBL_EPSILON)
#include CNNBP_BODY
