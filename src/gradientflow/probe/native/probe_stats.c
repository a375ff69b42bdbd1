/* One-pass statistics for the probe (CPU, float32): a plain C library loaded through ctypes.
 *
 * The pure-torch path needs about ten tensor ops (each a memory pass, an allocation and a
 * dispatch) per group of layers; for small networks the dispatches and for wide ones the memory
 * passes cost more than the step they measure. These functions read each tensor once.
 * Sums run in float32 SIMD lanes within blocks of at most BLOCK elements and in double across
 * blocks: close to double accuracy at float speed. Layers are given as an array of pointers, so layers of the
 * same shape need not be stacked (copied) first.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define BLOCK 2048

enum { PRE_CENTERED_SUM, PRE_CENTERED_SUMSQ, PRE_MIN, PRE_MAX, PRE_SATURATED, PRE_DEAD, PRE_NONFINITE, PRE_WIDTH };

typedef struct {
    double sum, sumsq;
    float mn, mx;
    int64_t saturated;
} Moments;

/* Saturated: strictly outside (lo, hi). The caller turns inclusive bounds into strict ones with
 * nextafterf and absent bounds into NaN (every comparison with NaN is false), so the test is two
 * comparisons with no data-independent branches left in the loop: that is what lets it vectorise. */
static inline int is_saturated(float v, float lo, float hi) { return (v < lo) | (v > hi); }

/* The fast path: no test for NaN/Inf per element, so the loops vectorise (omp simd allows the
 * reordered reductions). A non-finite input shows up as a non-finite sum of squares, and the
 * caller then recomputes with the careful path. */
static Moments moments_fast(const float *x, int64_t b0, int64_t b1, int64_t units, int64_t rest, float p, float lo, float hi,
                            int32_t *counts) {
    double sum = 0.0, sumsq = 0.0;
    float mn = INFINITY, mx = -INFINITY;
    int64_t saturated = 0;
    for (int64_t b = b0; b < b1; ++b) {
        const float *row = x + b * units * rest;
        if (rest == 1) {
            for (int64_t u0 = 0; u0 < units; u0 += BLOCK) {
                const int64_t u1 = u0 + BLOCK < units ? u0 + BLOCK : units;
                float bsum = 0.0f, bsq = 0.0f;
                int32_t bsat = 0;
#pragma omp simd reduction(+ : bsum, bsq, bsat) reduction(min : mn) reduction(max : mx)
                for (int64_t u = u0; u < u1; ++u) {
                    const float v = row[u];
                    const float c = v - p;
                    const int s = is_saturated(v, lo, hi);
                    bsum += c;
                    bsq += c * c;
                    mn = v < mn ? v : mn;
                    mx = v > mx ? v : mx;
                    counts[u] += s;
                    bsat += s;
                }
                sum += bsum;
                sumsq += bsq;
                saturated += bsat;
            }
        } else {
            for (int64_t u = 0; u < units; ++u) {
                const float *cell = row + u * rest;
                int32_t sat = 0;
                for (int64_t r0 = 0; r0 < rest; r0 += BLOCK) {
                    const int64_t r1 = r0 + BLOCK < rest ? r0 + BLOCK : rest;
                    float bsum = 0.0f, bsq = 0.0f;
#pragma omp simd reduction(+ : bsum, bsq, sat) reduction(min : mn) reduction(max : mx)
                    for (int64_t r = r0; r < r1; ++r) {
                        const float v = cell[r];
                        const float c = v - p;
                        bsum += c;
                        bsq += c * c;
                        mn = v < mn ? v : mn;
                        mx = v > mx ? v : mx;
                        sat += is_saturated(v, lo, hi);
                    }
                    sum += bsum;
                    sumsq += bsq;
                }
                counts[u] += sat;
                saturated += sat;
            }
        }
    }
    Moments m = {sum, sumsq, mn, mx, saturated};
    return m;
}

/* The careful path for inputs holding NaN or Inf: counts them, keeps NaN out of the sums
 * (the caller reports NaN moments when any NaN is present, as torch does). */
static Moments moments_careful(const float *x, int64_t n_rows, int64_t units, int64_t rest, float p, float lo, float hi,
                               int32_t *counts, int64_t *nonfinite, int64_t *nans) {
    Moments m = {0.0, 0.0, INFINITY, -INFINITY, 0};
    for (int64_t b = 0; b < n_rows; ++b) {
        for (int64_t u = 0; u < units; ++u) {
            for (int64_t r = 0; r < rest; ++r) {
                const float v = x[(b * units + u) * rest + r];
                if (!isfinite(v)) {
                    *nonfinite += 1;
                    if (isnan(v)) {
                        *nans += 1;
                        continue;
                    }
                }
                const double c = (double)v - (double)p;
                const int s = is_saturated(v, lo, hi);
                m.sum += c;
                m.sumsq += c * c;
                m.mn = v < m.mn ? v : m.mn;
                m.mx = v > m.mx ? v : m.mx;
                counts[u] += s;
                m.saturated += s;
            }
        }
    }
    return m;
}

/* Pre-activation statistics of `layers` tensors, each laid out (batch, units, rest), contiguous.
 * Saturated: v < lower (or <=, `inclusive`) when has_lower; v > upper (or >=) when has_upper.
 * out[layer * PRE_WIDTH + k], k as in the enum; sums and min/max are NaN when the layer holds a
 * NaN (as torch's reductions), and include infinities. `unit_counts` is scratch of
 * threads * units int64. Threads split the batch of one layer; small layers use one thread. */
void gf_pre_activation_stats(const float **xs, int64_t layers, int64_t batch, int64_t units, int64_t rest, const float *pivot,
                             int has_lower, double lower, int has_upper, double upper, int inclusive, int32_t *unit_counts,
                             double *out, int threads) {
    const int64_t per_unit = batch * rest;
    const float lo = !has_lower ? NAN : inclusive ? nextafterf((float)lower, INFINITY) : (float)lower;
    const float hi = !has_upper ? NAN : inclusive ? nextafterf((float)upper, -INFINITY) : (float)upper;
    if (batch * units * rest < 65536) threads = 1;
    for (int64_t l = 0; l < layers; ++l) {
        const float *x = xs[l];
        const float p = pivot[l];
        memset(unit_counts, 0, sizeof(int32_t) * (size_t)(threads * units));
        double sum = 0.0, sumsq = 0.0;
        float mn = INFINITY, mx = -INFINITY;
        int64_t saturated = 0;
#pragma omp parallel num_threads(threads) if (threads > 1) reduction(+ : sum, sumsq, saturated) reduction(min : mn) reduction(max : mx)
        {
            int t = 0, nt = 1;
#ifdef _OPENMP
            t = omp_get_thread_num();
            nt = omp_get_num_threads();
#endif
            const int64_t b0 = batch * t / nt, b1 = batch * (t + 1) / nt;
            Moments m = moments_fast(x, b0, b1, units, rest, p, lo, hi, unit_counts + (int64_t)t * units);
            sum += m.sum;
            sumsq += m.sumsq;
            mn = m.mn < mn ? m.mn : mn;
            mx = m.mx > mx ? m.mx : mx;
            saturated += m.saturated;
        }
        int64_t nonfinite = 0, nans = 0;
        if (!isfinite(sumsq)) {
            memset(unit_counts, 0, sizeof(int32_t) * (size_t)(threads * units));
            Moments m = moments_careful(x, batch, units, rest, p, lo, hi, unit_counts, &nonfinite, &nans);
            sum = m.sum, sumsq = m.sumsq, mn = m.mn, mx = m.mx, saturated = m.saturated;
        }
        int64_t dead = 0;
        for (int64_t u = 0; u < units; ++u) {
            int64_t total = 0;
            for (int i = 0; i < threads; ++i) total += unit_counts[(int64_t)i * units + u];
            dead += total == per_unit;
        }
        double *o = out + l * PRE_WIDTH;
        o[PRE_CENTERED_SUM] = nans ? NAN : sum;
        o[PRE_CENTERED_SUMSQ] = nans ? NAN : sumsq;
        o[PRE_MIN] = nans ? NAN : (double)mn;
        o[PRE_MAX] = nans ? NAN : (double)mx;
        o[PRE_SATURATED] = (double)saturated;
        o[PRE_DEAD] = (double)dead;
        o[PRE_NONFINITE] = (double)nonfinite;
    }
}

/* Sum and sum of squares of x[0..n), blocked as described at the top. */
static void sum_sumsq(const float *x, int64_t n, double *sum_out, double *sumsq_out, int threads) {
    double sum = 0.0, sumsq = 0.0;
#pragma omp parallel for num_threads(threads) if (threads > 1 && n >= 262144) reduction(+ : sum, sumsq) schedule(static)
    for (int64_t k0 = 0; k0 < n; k0 += BLOCK) {
        const int64_t k1 = k0 + BLOCK < n ? k0 + BLOCK : n;
        float bsum = 0.0f, bsq = 0.0f;
#pragma omp simd reduction(+ : bsum, bsq)
        for (int64_t k = k0; k < k1; ++k) {
            bsum += x[k];
            bsq += x[k] * x[k];
        }
        sum += bsum;
        sumsq += bsq;
    }
    *sum_out = sum;
    *sumsq_out = sumsq;
}

/* Sum and sum of squares of each of `layers` contiguous float32 tensors of n elements:
 * out[2 * layer] = sum, out[2 * layer + 1] = sum of squares (NaN propagates, as in torch). */
void gf_sum_sumsq(const float **xs, int64_t layers, int64_t n, double *out, int threads) {
    for (int64_t l = 0; l < layers; ++l) sum_sumsq(xs[l], n, &out[2 * l], &out[2 * l + 1], threads);
}

/* Weight snapshot before an optimizer step, for `count` contiguous float32 weights: copies every
 * entry of src[i] into dst[i] (positions[i] NULL), or only entries positions[i][0..m[i]) (a fixed
 * sample of a large weight); out[i] = the sum of squares of ALL of src[i] (its norm, squared). */
void gf_snapshot(const float **src, float **dst, const int64_t *n, const int64_t **positions, const int64_t *m, int64_t count, double *out,
                 int threads) {
    for (int64_t i = 0; i < count; ++i) {
        const float *w = src[i];
        float *keep = dst[i];
        const int64_t size = n[i];
        double sum, sumsq;
        if (positions[i] == NULL) memcpy(keep, w, sizeof(float) * (size_t)size);
        sum_sumsq(w, size, &sum, &sumsq, threads);
        if (positions[i] != NULL) {
            const int64_t *pos = positions[i];
            for (int64_t k = 0; k < m[i]; ++k) keep[k] = w[pos[k]];
        }
        out[i] = sumsq;
    }
}

/* After the step: out[3i] = sum of squares of grad[i] (NaN when grad[i] is NULL), out[3i+1] = of
 * (w[i] - before[i]) over the tracked entries, out[3i+2] = of before[i] (tracked entries). */
void gf_update(const float **w, const float **before, const float **grad, const int64_t *n, const int64_t **positions, const int64_t *m,
               int64_t count, double *out, int threads) {
    for (int64_t i = 0; i < count; ++i) {
        const int64_t size = n[i];
        double g_sum, g2 = NAN, change = 0.0, tracked = 0.0;
        if (grad[i] != NULL) sum_sumsq(grad[i], size, &g_sum, &g2, threads);
        const float *now = w[i], *old = before[i];
        if (positions[i] == NULL) {
#pragma omp parallel for num_threads(threads) if (threads > 1 && size >= 262144) reduction(+ : change, tracked) schedule(static)
            for (int64_t k0 = 0; k0 < size; k0 += BLOCK) {
                const int64_t k1 = k0 + BLOCK < size ? k0 + BLOCK : size;
                float bchange = 0.0f, btracked = 0.0f;
#pragma omp simd reduction(+ : bchange, btracked)
                for (int64_t k = k0; k < k1; ++k) {
                    const float d = now[k] - old[k];
                    bchange += d * d;
                    btracked += old[k] * old[k];
                }
                change += bchange;
                tracked += btracked;
            }
        } else {
            const int64_t *pos = positions[i];
            for (int64_t k = 0; k < m[i]; ++k) {
                const double d = (double)now[pos[k]] - old[k];
                change += d * d;
                tracked += (double)old[k] * old[k];
            }
        }
        out[3 * i] = g2;
        out[3 * i + 1] = change;
        out[3 * i + 2] = tracked;
    }
}


/* BatchNorm's view of its input, for `layers` tensors laid out (batch, units, rest): out[2l] =
 * the mean over units of each unit's batch mean, out[2l+1] = the mean over units of each unit's
 * batch variance (ddof 0, as BN normalises). Each unit is shifted by its first value before
 * summing squares, which keeps E[x^2] - E[x]^2 accurate when the mean is large against the
 * spread. `scratch` holds 3 * units doubles. */
void gf_unit_moments(const float **xs, int64_t layers, int64_t batch, int64_t units, int64_t rest, double *scratch, double *out, int threads) {
    double *shift = scratch, *sum = scratch + units, *sumsq = scratch + 2 * units;
    const double n = (double)(batch * rest);
    for (int64_t l = 0; l < layers; ++l) {
        const float *x = xs[l];
        for (int64_t u = 0; u < units; ++u) shift[u] = x[u * rest], sum[u] = 0.0, sumsq[u] = 0.0;
        if (rest == 1) {
            for (int64_t b = 0; b < batch; ++b) {
                const float *row = x + b * units;
#pragma omp simd
                for (int64_t u = 0; u < units; ++u) {
                    const double d = (double)row[u] - shift[u];
                    sum[u] += d;
                    sumsq[u] += d * d;
                }
            }
        } else {
            /* units are independent: threads split them (each reads its own contiguous cells) */
#pragma omp parallel for num_threads(threads) if (threads > 1 && batch * units * rest >= 262144) schedule(static)
            for (int64_t u = 0; u < units; ++u) {
                const float s0 = (float)shift[u];
                double usum = 0.0, usq = 0.0;
                for (int64_t b = 0; b < batch; ++b) {
                    const float *cell = x + (b * units + u) * rest;
                    float bsum = 0.0f, bsq = 0.0f;
#pragma omp simd reduction(+ : bsum, bsq)
                    for (int64_t r = 0; r < rest; ++r) {
                        const float d = cell[r] - s0;
                        bsum += d;
                        bsq += d * d;
                    }
                    usum += bsum;
                    usq += bsq;
                }
                sum[u] = usum;
                sumsq[u] = usq;
            }
        }
        double mean_of_means = 0.0, mean_of_vars = 0.0;
        for (int64_t u = 0; u < units; ++u) {
            const double offset = sum[u] / n;
            mean_of_means += shift[u] + offset;
            mean_of_vars += sumsq[u] / n - offset * offset;
        }
        out[2 * l] = mean_of_means / (double)units;
        out[2 * l + 1] = mean_of_vars / (double)units;
    }
}
