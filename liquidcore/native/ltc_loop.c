/* liquidcore's native LTC kernels, built by liquidcore/native/build.py (at install, at start-up
 * or on first use) and called through ctypes (no Python or torch headers: the build takes about
 * a second). */
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#else /* built without OpenMP (e.g. Apple clang without libomp): one thread runs every tile */
static inline int omp_get_thread_num(void) { return 0; }
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TILE 16 /* streams per tile: two 8-float vectors */

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
#define SPLAT(c) ((v8f){c, c, c, c, c, c, c, c})

static inline v8f select8(v8i m, v8f a, v8f b) { return (v8f)((m & (v8i)a) | (~m & (v8i)b)); }

/* exp of 8 floats (Cephes's expf: range reduction by ln 2 and a degree-6 polynomial, within
 * 2 ulp). Arguments are clamped to where the result is a normal float; NaN propagates. GCC's
 * vector extensions, so it is vectorised on any target (AVX2 when built with -mavx2). */
static inline v8f exp8(v8f x) {
    v8f c = select8(x < SPLAT(88.3762626647949f), x, SPLAT(88.3762626647949f));
    c = select8(c > SPLAT(-87.3365478515625f), c, SPLAT(-87.3365478515625f));
    const v8f magic = SPLAT(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    const v8f n = (c * 1.44269504088896341f + magic) - magic;
    c -= n * 0.693359375f;
    c -= n * -2.12194440e-4f;
    const v8f z = c * c;
    v8f p = SPLAT(1.9875691500e-4f);
    p = p * c + 1.3981999507e-3f;
    p = p * c + 8.3334519073e-3f;
    p = p * c + 4.1665795894e-2f;
    p = p * c + 1.6666665459e-1f;
    p = p * c + 5.0000001201e-1f;
    p = p * z + c + 1.0f;
    const v8i k = __builtin_convertvector(n, v8i);
    return select8(x == x, p * (v8f)((k + 127) << 23), x);
}

static inline void sigmoid_tile_f32(float *y, const float *u, float sigma, float bias) {
    for (int k = 0; k < TILE; k += 8) {
        v8f x;
        memcpy(&x, u + k, sizeof x);
        const v8f r = 1.0f / (1.0f + exp8(-(sigma * x + bias)));
        memcpy(y + k, &r, sizeof r);
    }
}

static inline void sigmoid_tile_f64(double *y, const double *u, double sigma, double bias) {
    for (int l = 0; l < TILE; ++l) y[l] = 1.0 / (1.0 + exp(-(sigma * u[l] + bias)));
}

/* y[i] = sigmoid(y[i]) for i in [0, n): 8 at a time, the tail through a zero-padded vector */
static inline void sigmoid_array_f32(float *y, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f x;
        memcpy(&x, y + i, sizeof x);
        const v8f r = 1.0f / (1.0f + exp8(-x));
        memcpy(y + i, &r, sizeof r);
    }
    if (i < n) {
        float tail[8] = {0};
        memcpy(tail, y + i, sizeof(float) * (size_t)(n - i));
        v8f x;
        memcpy(&x, tail, sizeof x);
        const v8f r = 1.0f / (1.0f + exp8(-x));
        memcpy(y + i, &r, sizeof(float) * (size_t)(n - i));
    }
}

static inline void sigmoid_array_f64(double *y, long n) {
    for (long i = 0; i < n; ++i) y[i] = 1.0 / (1.0 + exp(-y[i]));
}

/* What ltc_step reads besides the per-call tensors: the folded weights, fixed between
 * parameter updates (liquidcore/native/ltc_step.py builds it once per fold). Synapse sets are
 * sorted by destination; starts[j] is where unit j's synapses begin. Pointers are to REAL of
 * the precision the function is called in; in_w, in_b, out_w, out_b may be NULL. */
typedef struct {
    int H, S, M, U; /* units, inputs, motor units, unfolds */
    long E, Es;     /* recurrent and sensory synapses */
    const void *leak, *cu, *in_w, *in_b, *out_w, *out_b;
    const void *pair_w, *reduce_w, *sigma, *bias; /* recurrent: interleaved and split */
    const int64_t *src, *starts;
    const void *s_sigma, *s_bias, *s_reduce_w; /* sensory */
    const int64_t *s_src, *s_starts;
} ltc_step_plan;

#define ROW_MAX 4 /* a tile of at most this many streams runs them one at a time */

#define REAL float
#define FN(name) name##_f32
#include "ltc_loop.h"
#include "ltc_step.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_f64
#include "ltc_loop.h"
#include "ltc_step.h"
#undef REAL
#undef FN
