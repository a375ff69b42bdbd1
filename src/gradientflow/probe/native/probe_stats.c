/* One-pass statistics for the probe (CPU, float32): a plain C library loaded through ctypes.
 *
 * The pure-torch path needs about ten tensor ops (each a memory pass, an allocation and a
 * dispatch) per group of layers; for small networks the dispatches and for wide ones the memory
 * passes cost more than the step they measure. These functions read each tensor once.
 * Sums run in float32 SIMD lanes over spans of at most FOLD elements and in double across
 * spans: close to double accuracy at float speed. Layers are given as an array of pointers, so layers of the
 * same shape need not be stacked (copied) first.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif


enum { PRE_CENTERED_SUM, PRE_CENTERED_SUMSQ, PRE_MIN, PRE_MAX, PRE_SATURATED, PRE_DEAD, PRE_NONFINITE, PRE_WIDTH };

typedef struct {
    double sum, sumsq;
    float mn, mx;
    int64_t saturated;
} Moments;

/* Saturated: strictly outside (lo, hi), or strictly inside the band (blo, bhi) where the
 * derivative crosses zero (GELU, SiLU, Mish). The caller turns inclusive bounds into strict ones
 * with nextafterf and absent bounds into NaN (every comparison with NaN is false), so the test is
 * four comparisons with no data-independent branches left in the loop: that is what lets it vectorise. */
static inline int is_saturated(float v, float lo, float hi, float blo, float bhi) {
    return (v < lo) | (v > hi) | ((v > blo) & (v < bhi));
}

/* Independent float32 accumulators: a loop with one accumulator per quantity is bound by the
 * latency of its chain of dependent adds (one vector add every 3-4 cycles); LANES accumulators
 * keep the adders busy. They are folded into doubles after at most FOLD elements, which keeps
 * float32 rounding to at most FOLD / LANES terms per lane. The plain sums use 32 lanes (two
 * quantities: four 256-bit registers each); the pre-activation pass keeps five quantities, so it
 * uses 16 lanes, which still fit the 16 vector registers (more would spill to memory). */
#define LANES 32
#define MOMENT_LANES 16
#define FOLD 16384

typedef struct {
    float sum[MOMENT_LANES], sumsq[MOMENT_LANES], mn[MOMENT_LANES], mx[MOMENT_LANES];
    int64_t pending; /* elements added since the last fold */
} Lanes;

static inline void lanes_reset(Lanes *a) {
    for (int j = 0; j < MOMENT_LANES; ++j) a->sum[j] = 0.0f, a->sumsq[j] = 0.0f, a->mn[j] = INFINITY, a->mx[j] = -INFINITY;
    a->pending = 0;
}

/* Adds the lanes into the double sums and float extremes of `m`, then resets them. */
static inline void lanes_fold(Lanes *a, Moments *m) {
    double sum = 0.0, sumsq = 0.0;
    for (int j = 0; j < MOMENT_LANES; ++j) {
        sum += a->sum[j];
        sumsq += a->sumsq[j];
        m->mn = a->mn[j] < m->mn ? a->mn[j] : m->mn;
        m->mx = a->mx[j] > m->mx ? a->mx[j] : m->mx;
    }
    m->sum += sum;
    m->sumsq += sumsq;
    lanes_reset(a);
}

/* Eight floats (or int32) in one value: GCC's and Clang's vector extension, which compiles to
 * AVX, SSE or NEON as the target allows. Written out because the compiler kept the lane arrays of
 * a plain loop in memory (a store and a load per accumulator per step). */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

static inline v8f load8(const float *p) {
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline v8i load8i(const int32_t *p) {
    v8i v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void store8(float *p, v8f v) { memcpy(p, &v, sizeof v); }
static inline void store8i(int32_t *p, v8i v) { memcpy(p, &v, sizeof v); }
#if defined(__AVX__)
#include <immintrin.h>
/* One instruction each; a NaN in `a` gives `b` (the fast path never sees one that matters). */
static inline v8f min8(v8f a, v8f b) { return (v8f)_mm256_min_ps((__m256)a, (__m256)b); }
static inline v8f max8(v8f a, v8f b) { return (v8f)_mm256_max_ps((__m256)a, (__m256)b); }
#else
static inline v8f pick(v8i mask, v8f a, v8f b) { return (v8f)((mask & (v8i)a) | (~mask & (v8i)b)); }
static inline v8f min8(v8f a, v8f b) { return pick(a < b, a, b); }
static inline v8f max8(v8f a, v8f b) { return pick(a > b, a, b); }
#endif

/* Adds x[0..n), centred on p, into the lanes; returns how many elements are saturated. With
 * `alive`, also sets alive[k] to 1 where element k is not saturated (dense rows: element k is
 * unit k). Callers pass a literal NULL or not, so the inlined copies have no test in the loop. */
static inline int64_t lanes_add(Lanes *a, const float *x, int64_t n, float p, float lo, float hi, float blo, float bhi,
                                int32_t *alive) {
    const v8f vp = (v8f){0} + p, vlo = (v8f){0} + lo, vhi = (v8f){0} + hi, vblo = (v8f){0} + blo, vbhi = (v8f){0} + bhi;
    v8f s0 = load8(a->sum), s1 = load8(a->sum + 8), q0 = load8(a->sumsq), q1 = load8(a->sumsq + 8);
    v8f mn0 = load8(a->mn), mn1 = load8(a->mn + 8), mx0 = load8(a->mx), mx1 = load8(a->mx + 8);
    v8i t0 = {0}, t1 = {0};
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        const v8f v0 = load8(x + k), v1 = load8(x + k + 8);
        const v8f c0 = v0 - vp, c1 = v1 - vp;
        const v8i z0 = (v0 < vlo) | (v0 > vhi) | ((v0 > vblo) & (v0 < vbhi)); /* -1 where saturated */
        const v8i z1 = (v1 < vlo) | (v1 > vhi) | ((v1 > vblo) & (v1 < vbhi));
        s0 += c0, s1 += c1, q0 += c0 * c0, q1 += c1 * c1;
        mn0 = min8(v0, mn0), mn1 = min8(v1, mn1), mx0 = max8(v0, mx0), mx1 = max8(v1, mx1);
        t0 -= z0, t1 -= z1;
        if (alive) store8i(alive + k, load8i(alive + k) | (~z0 & 1)), store8i(alive + k + 8, load8i(alive + k + 8) | (~z1 & 1));
    }
    if (k + 8 <= n) {
        const v8f v0 = load8(x + k), c0 = v0 - vp;
        const v8i z0 = (v0 < vlo) | (v0 > vhi) | ((v0 > vblo) & (v0 < vbhi));
        s0 += c0, q0 += c0 * c0, mn0 = min8(v0, mn0), mx0 = max8(v0, mx0), t0 -= z0;
        if (alive) store8i(alive + k, load8i(alive + k) | (~z0 & 1));
        k += 8;
    }
    store8(a->sum, s0), store8(a->sum + 8, s1), store8(a->sumsq, q0), store8(a->sumsq + 8, q1);
    store8(a->mn, mn0), store8(a->mn + 8, mn1), store8(a->mx, mx0), store8(a->mx + 8, mx1);
    int64_t saturated = 0;
    for (int j = 0; j < 8; ++j) saturated += t0[j] + t1[j];
    for (int j = 0; k < n; ++k, ++j) {
        const float v = x[k];
        const float c = v - p;
        const int32_t t = is_saturated(v, lo, hi, blo, bhi);
        a->sum[j] += c;
        a->sumsq[j] += c * c;
        a->mn[j] = v < a->mn[j] ? v : a->mn[j];
        a->mx[j] = v > a->mx[j] ? v : a->mx[j];
        saturated += t;
        if (alive) alive[k] |= !t;
    }
    a->pending += n;
    return saturated;
}

/* The fast path: no test for NaN/Inf per element, so the loops vectorise (omp simd allows the
 * reordered reductions). A non-finite input shows up as a non-finite sum of squares, and the
 * caller then recomputes with the careful path. */
static Moments moments_fast(const float *x, int64_t b0, int64_t b1, int64_t units, int64_t rest, float p, float lo, float hi,
                            float blo, float bhi, int32_t *alive) {
    Moments m = {0.0, 0.0, INFINITY, -INFINITY, 0};
    Lanes a;
    lanes_reset(&a);
    for (int64_t b = b0; b < b1; ++b) {
        const float *row = x + b * units * rest;
        if (rest == 1) {
            m.saturated += lanes_add(&a, row, units, p, lo, hi, blo, bhi, alive);
            if (a.pending >= FOLD) lanes_fold(&a, &m);
        } else {
            /* the row as one span (a cell of a few dozen values would spend its time on tails) */
            const int64_t width = units * rest;
            for (int64_t k0 = 0; k0 < width; k0 += FOLD) {
                m.saturated += lanes_add(&a, row + k0, (k0 + FOLD < width ? k0 + FOLD : width) - k0, p, lo, hi, blo, bhi, NULL);
                if (a.pending >= FOLD) lanes_fold(&a, &m);
            }
            /* a unit is alive once any of its values is not saturated: its cells are not read again */
            for (int64_t u = 0; u < units; ++u) {
                if (alive[u]) continue;
                const float *cell = row + u * rest;
                for (int64_t r = 0; r < rest; ++r)
                    if (!is_saturated(cell[r], lo, hi, blo, bhi)) {
                        alive[u] = 1;
                        break;
                    }
            }
        }
    }
    lanes_fold(&a, &m);
    return m;
}

/* The careful path for inputs holding NaN or Inf: counts them, keeps NaN out of the sums
 * (the caller reports NaN moments when any NaN is present, as torch does). */
static Moments moments_careful(const float *x, int64_t n_rows, int64_t units, int64_t rest, float p, float lo, float hi, float blo, float bhi,
                               int32_t *alive, int64_t *nonfinite, int64_t *nans) {
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
                const int s = is_saturated(v, lo, hi, blo, bhi);
                m.sum += c;
                m.sumsq += c * c;
                m.mn = v < m.mn ? v : m.mn;
                m.mx = v > m.mx ? v : m.mx;
                alive[u] |= !s;
                m.saturated += s;
            }
        }
    }
    return m;
}

/* Pre-activation statistics of `layers` tensors, each laid out (batch, units, rest), contiguous.
 * Saturated: v < lower (or <=, `inclusive`) when has_lower; v > upper (or >=) when has_upper;
 * band_lower < v < band_upper (NaN bounds: no band).
 * out[layer * PRE_WIDTH + k], k as in the enum; sums and min/max are NaN when the layer holds a
 * NaN (as torch's reductions), and include infinities. `unit_counts` is scratch of
 * threads * units int32 (per thread: which units have a value that is not saturated). Threads
 * split the batch of one layer; small layers use one thread. A dead unit is saturated in every
 * value of every example. */
void gf_pre_activation_stats(const float **xs, int64_t layers, int64_t batch, int64_t units, int64_t rest, const float *pivot,
                             int has_lower, double lower, int has_upper, double upper, int inclusive, double band_lower,
                             double band_upper, int32_t *unit_counts, double *out, int threads) {
    const float lo = !has_lower ? NAN : inclusive ? nextafterf((float)lower, INFINITY) : (float)lower;
    const float hi = !has_upper ? NAN : inclusive ? nextafterf((float)upper, -INFINITY) : (float)upper;
    const float blo = (float)band_lower, bhi = (float)band_upper;
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
            Moments m = moments_fast(x, b0, b1, units, rest, p, lo, hi, blo, bhi, unit_counts + (int64_t)t * units);
            sum += m.sum;
            sumsq += m.sumsq;
            mn = m.mn < mn ? m.mn : mn;
            mx = m.mx > mx ? m.mx : mx;
            saturated += m.saturated;
        }
        int64_t nonfinite = 0, nans = 0;
        if (!isfinite(sumsq)) {
            memset(unit_counts, 0, sizeof(int32_t) * (size_t)(threads * units));
            Moments m = moments_careful(x, batch, units, rest, p, lo, hi, blo, bhi, unit_counts, &nonfinite, &nans);
            sum = m.sum, sumsq = m.sumsq, mn = m.mn, mx = m.mx, saturated = m.saturated;
        }
        int64_t dead = 0;
        for (int64_t u = 0; u < units; ++u) {
            int32_t alive = 0;
            for (int i = 0; i < threads; ++i) alive |= unit_counts[(int64_t)i * units + u];
            dead += !alive;
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

/* Sums of x and x^2 over [0, n), n <= FOLD, in LANES independent accumulators (see Lanes). */
static inline void span_sum_sumsq(const float *x, int64_t n, double *sum, double *sumsq) {
    float s[LANES] = {0.0f}, q[LANES] = {0.0f};
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES) {
#pragma omp simd
        for (int j = 0; j < LANES; ++j) {
            const float v = x[k + j];
            s[j] += v;
            q[j] += v * v;
        }
    }
    for (int j = 0; k < n; ++k, ++j) s[j] += x[k], q[j] += x[k] * x[k];
    double ds = 0.0, dq = 0.0;
    for (int j = 0; j < LANES; ++j) ds += s[j], dq += q[j];
    *sum += ds;
    *sumsq += dq;
}

/* Sums of (now - old)^2 and old^2 over [0, n), n <= FOLD, in LANES independent accumulators. */
static inline void span_change(const float *now, const float *old, int64_t n, double *change, double *tracked) {
    float c[LANES] = {0.0f}, t[LANES] = {0.0f};
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES) {
#pragma omp simd
        for (int j = 0; j < LANES; ++j) {
            const float d = now[k + j] - old[k + j];
            c[j] += d * d;
            t[j] += old[k + j] * old[k + j];
        }
    }
    for (int j = 0; k < n; ++k, ++j) {
        const float d = now[k] - old[k];
        c[j] += d * d;
        t[j] += old[k] * old[k];
    }
    double dc = 0.0, dt = 0.0;
    for (int j = 0; j < LANES; ++j) dc += c[j], dt += t[j];
    *change += dc;
    *tracked += dt;
}

/* Threads for a pass over one weight or gradient of `size` entries, split as PyTorch's
 * at::parallel_for splits it (grain 32768, chunks of ceil(size / tasks)): the optimizer's and
 * autograd's kernels just wrote those chunks from those threads, so each thread reads what is
 * already in its own core's cache (read from one thread, the other core's half of a small MLP's
 * weights made the probe's weight pass several times slower than in isolation). */
#define TORCH_GRAIN 32768
static inline int torch_tasks(int64_t size, int threads) {
    const int64_t tasks = (size + TORCH_GRAIN - 1) / TORCH_GRAIN;
    return threads < 1 ? 1 : tasks < threads ? (int)(tasks < 1 ? 1 : tasks) : threads;
}

/* This thread's chunk [*b, *e) of [0, size) in a parallel region of torch_tasks(size) threads. */
static inline void torch_chunk(int64_t size, int64_t *b, int64_t *e) {
    int t = 0, nt = 1;
#ifdef _OPENMP
    t = omp_get_thread_num();
    nt = omp_get_num_threads();
#endif
    const int64_t chunk = (size + nt - 1) / nt;
    *b = chunk * t < size ? chunk * t : size;
    *e = *b + chunk < size ? *b + chunk : size;
}

/* Sum and sum of squares of x[0..n): spans of FOLD elements, split across threads when large. */
static void sum_sumsq(const float *x, int64_t n, double *sum_out, double *sumsq_out, int threads) {
    double sum = 0.0, sumsq = 0.0;
    const int tasks = torch_tasks(n, threads);
#pragma omp parallel num_threads(tasks) if (tasks > 1) reduction(+ : sum, sumsq)
    {
        int64_t b, e;
        torch_chunk(n, &b, &e);
        for (int64_t k0 = b; k0 < e; k0 += FOLD) span_sum_sumsq(x + k0, (k0 + FOLD < e ? k0 + FOLD : e) - k0, &sum, &sumsq);
    }
    *sum_out = sum;
    *sumsq_out = sumsq;
}

/* The first index j of the sorted pos[0..m) with pos[j] >= value (m when none). */
static inline int64_t lower_bound(const int64_t *pos, int64_t m, int64_t value) {
    int64_t lo = 0, hi = m;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (pos[mid] < value) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* One span [k0, k1) of a sampled weight w (tracked entries pos[0..m), sorted): with `norm`, the
 * sum of squares of the whole span; then the tracked entries inside it, read while the span is in
 * cache: the change against old[] and old's squares, or (`copy`) old[] takes w's values. */
static inline void sampled_span(const float *w, int64_t k0, int64_t k1, const int64_t *pos, int64_t m, float *old, int copy,
                                double *norm, double *change, double *tracked) {
    if (norm != NULL) {
        double unused = 0.0;
        span_sum_sumsq(w + k0, k1 - k0, &unused, norm);
    }
    for (int64_t j = lower_bound(pos, m, k0); j < m && pos[j] < k1; ++j) {
        const float v = w[pos[j]];
        if (change != NULL) {
            const double d = (double)v - old[j];
            *change += d * d;
            *tracked += (double)old[j] * old[j];
        }
        if (copy) old[j] = v;
    }
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
        double sumsq = 0.0;
        if (positions[i] == NULL) {
            /* copy and measure in one pass over the weight */
            const int tasks = torch_tasks(size, threads);
#pragma omp parallel num_threads(tasks) if (tasks > 1) reduction(+ : sumsq)
            {
                int64_t b, e;
                torch_chunk(size, &b, &e);
                for (int64_t k0 = b; k0 < e; k0 += FOLD) {
                    const int64_t n_span = (k0 + FOLD < e ? k0 + FOLD : e) - k0;
                    double unused = 0.0;
                    memcpy(keep + k0, w + k0, sizeof(float) * (size_t)n_span);
                    span_sum_sumsq(keep + k0, n_span, &unused, &sumsq);
                }
            }
        } else {
#pragma omp parallel for num_threads(threads) if (threads > 1 && size >= 262144) reduction(+ : sumsq) schedule(static)
            for (int64_t k0 = 0; k0 < size; k0 += FOLD)
                sampled_span(w, k0, k0 + FOLD < size ? k0 + FOLD : size, positions[i], m[i], keep, 1, &sumsq, NULL, NULL);
        }
        out[i] = sumsq;
    }
}

/* Sums of (now - old)^2 and old^2 over [0, n), n <= FOLD, like span_change; also the sum of
 * now^2, and then old takes now's values (the snapshot of the next step, in the same pass). */
static inline void span_change_keep(const float *now, float *old, int64_t n, double *change, double *tracked, double *norm) {
    float c[LANES] = {0.0f}, t[LANES] = {0.0f}, q[LANES] = {0.0f};
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES) {
#pragma omp simd
        for (int j = 0; j < LANES; ++j) {
            const float v = now[k + j], o = old[k + j], d = v - o;
            c[j] += d * d;
            t[j] += o * o;
            q[j] += v * v;
            old[k + j] = v;
        }
    }
    for (int j = 0; k < n; ++k, ++j) {
        const float v = now[k], o = old[k], d = v - o;
        c[j] += d * d;
        t[j] += o * o;
        q[j] += v * v;
        old[k] = v;
    }
    double dc = 0.0, dt = 0.0, dq = 0.0;
    for (int j = 0; j < LANES; ++j) dc += c[j], dt += t[j], dq += q[j];
    *change += dc;
    *tracked += dt;
    *norm += dq;
}

/* After the step: out[3i] = sum of squares of grad[i] (NaN when grad[i] is NULL), out[3i+1] = of
 * (w[i] - before[i]) over the tracked entries, out[3i+2] = of before[i] (tracked entries).
 * With `keep` (not NULL), the pass also takes the next step's snapshot: before[i] receives w[i]'s
 * tracked entries and keep[i] the sum of squares of all of w[i] (as gf_snapshot would, without a
 * second pass over the weights). */
void gf_update(const float **w, float **before, const float **grad, const int64_t *n, const int64_t **positions, const int64_t *m,
               int64_t count, double *out, double *keep, int threads) {
    for (int64_t i = 0; i < count; ++i) {
        const int64_t size = n[i];
        double g_sum, g2 = NAN, change = 0.0, tracked = 0.0, norm = 0.0;
        if (grad[i] != NULL) sum_sumsq(grad[i], size, &g_sum, &g2, threads);
        const float *now = w[i];
        float *old = before[i];
        if (positions[i] == NULL && keep != NULL) {
            const int tasks = torch_tasks(size, threads);
#pragma omp parallel num_threads(tasks) if (tasks > 1) reduction(+ : change, tracked, norm)
            {
                int64_t b, e;
                torch_chunk(size, &b, &e);
                for (int64_t k0 = b; k0 < e; k0 += FOLD)
                    span_change_keep(now + k0, old + k0, (k0 + FOLD < e ? k0 + FOLD : e) - k0, &change, &tracked, &norm);
            }
        } else if (positions[i] == NULL) {
            const int tasks = torch_tasks(size, threads);
#pragma omp parallel num_threads(tasks) if (tasks > 1) reduction(+ : change, tracked)
            {
                int64_t b, e;
                torch_chunk(size, &b, &e);
                for (int64_t k0 = b; k0 < e; k0 += FOLD)
                    span_change(now + k0, old + k0, (k0 + FOLD < e ? k0 + FOLD : e) - k0, &change, &tracked);
            }
        } else {
            /* one pass: each span's norm (for the next snapshot) and its tracked entries, in cache */
#pragma omp parallel for num_threads(threads) if (threads > 1 && size >= 262144) reduction(+ : change, tracked, norm) schedule(static)
            for (int64_t k0 = 0; k0 < size; k0 += FOLD)
                sampled_span(now, k0, k0 + FOLD < size ? k0 + FOLD : size, positions[i], m[i], old, keep != NULL,
                             keep != NULL ? &norm : NULL, &change, &tracked);
        }
        out[3 * i] = g2;
        out[3 * i + 1] = change;
        out[3 * i + 2] = tracked;
        if (keep != NULL) keep[i] = norm;
    }
}


static inline float root(double squared) {
    const double v = sqrt(squared);
    return v > FLT_MAX ? INFINITY : (float)v; /* a double beyond float's range converts to inf, not undefined */
}

/* gf_update for the probe's weight rows: table[4i..4i+3] = float32 norms of the weight before
 * the step (from norms[i], squared), of the gradient, of the update and of the tracked weights
 * before it. With `keep`, the pass also takes the next snapshot and norms[i] becomes the squared
 * norm of the weights now. `scratch` holds 3 * count doubles. */
void gf_weight_table(const float **w, float **before, const float **grad, const int64_t *n, const int64_t **positions, const int64_t *m,
                     int64_t count, double *norms, int keep, double *scratch, float *table, int threads) {
    for (int64_t i = 0; i < count; ++i) table[4 * i] = root(norms[i]);
    gf_update(w, before, grad, n, positions, m, count, scratch, keep ? norms : NULL, threads);
    for (int64_t i = 0; i < count; ++i)
        for (int j = 0; j < 3; ++j) table[4 * i + 1 + j] = root(scratch[3 * i + j]);
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

/* ---------------------------------------------------------------- order statistics
 * Percentiles need a few order statistics of a sample of at most a few thousand values. A full
 * sort does far more work than needed. A radix select histograms one byte of each key, then
 * copies out only the keys of the bins that hold a wanted rank (without branches: every key is
 * stored and the fill count moves on only where its bin is wanted) and goes on with the next byte
 * of those. A byte, not 11 bits: the tables are cleared and scanned at every level, and for a few
 * thousand keys 2,048 bins cost more than the keys. Floats map to unsigned keys whose order is the
 * floats' order; NaN maps to the largest key, so NaNs sort last, as numpy sorts them. */

#define RADIX_BITS 8
#define RADIX_BINS (1 << RADIX_BITS)
#define SMALL_SELECT 32
#define MAX_RANKS 64
#define STREAMS 4

static inline uint32_t float_key(float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    if (v != v) return 0xFFFFFFFFu;
    return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

static inline float key_float(uint32_t key) {
    const uint32_t bits = (key & 0x80000000u) ? key & 0x7FFFFFFFu : ~key;
    float v;
    memcpy(&v, &bits, sizeof v);
    return key == 0xFFFFFFFFu ? NAN : v;
}

static void insertion_sort(uint32_t *keys, int64_t count) {
    for (int64_t i = 1; i < count; ++i) {
        const uint32_t key = keys[i];
        int64_t j = i - 1;
        for (; j >= 0 && keys[j] > key; --j) keys[j + 1] = keys[j];
        keys[j + 1] = key;
    }
}

/* out[i] = the ranks[i]-th smallest of keys[0..count) (0-based, ranks ascending, nr <= MAX_RANKS);
 * every key shares the bits above shift + RADIX_BITS. `spare` holds at least 3 * (count + MAX_RANKS)
 * keys (each level's copies, and the levels below them). Keys are counted in STREAMS interleaved
 * streams with their own counters: most keys of a bell-shaped sample fall in a few bins, and one
 * counter per bin would make each key wait for the previous key's increment to reach memory. */
static void select_ranks(uint32_t *keys, int64_t count, int shift, const int64_t *ranks, int64_t nr, uint32_t *out, uint32_t *spare) {
    if (count <= SMALL_SELECT) {
        insertion_sort(keys, count);
        for (int64_t i = 0; i < nr; ++i) out[i] = keys[ranks[i]];
        return;
    }
    const uint32_t mask = RADIX_BINS - 1;
    int32_t counts[STREAMS][RADIX_BINS] = {{0}};
    const int64_t whole = count - count % STREAMS;
    for (int64_t k = 0; k < whole; k += STREAMS)
        for (int s = 0; s < STREAMS; ++s) counts[s][(keys[k + s] >> shift) & mask] += 1;
    for (int64_t k = whole; k < count; ++k) counts[0][(keys[k] >> shift) & mask] += 1;
    int32_t start[RADIX_BINS + 1];
    start[0] = 0;
    for (int d = 0; d < RADIX_BINS; ++d) start[d + 1] = start[d] + counts[0][d] + counts[1][d] + counts[2][d] + counts[3][d];
    /* the wanted bins, in order, and the ranks each holds */
    uint32_t bins[MAX_RANKS];
    int64_t first[MAX_RANKS + 1], wanted = 0;
    for (int64_t i = 0, d = 0; i < nr; ++i) {
        while (start[d + 1] <= ranks[i]) ++d;
        if (wanted == 0 || bins[wanted - 1] != (uint32_t)d) bins[wanted] = (uint32_t)d, first[wanted++] = i;
    }
    first[wanted] = nr;
    if (shift == 0) { /* the last byte: every key of a bin is the same value */
        for (int64_t w = 0; w < wanted; ++w)
            for (int64_t i = first[w]; i < first[w + 1]; ++i) out[i] = (keys[0] & ~mask) | bins[w];
        return;
    }
    /* copy out the keys of the wanted bins, four bins per pass, without branches: each key is
     * stored in every region and the region's count moves on only where the key's bin is the
     * region's, so each region has one spare slot at its end for the store past its last key */
    uint32_t *region[MAX_RANKS];
    int64_t filled[MAX_RANKS];
    uint32_t *at = spare;
    for (int64_t w = 0; w < wanted; ++w) region[w] = at, at += start[bins[w] + 1] - start[bins[w]] + 1;
    for (int64_t w0 = 0; w0 < wanted; w0 += 4) {
        uint32_t none[1], *r0 = region[w0], *r1 = none, *r2 = none, *r3 = none;
        uint32_t b0 = bins[w0], b1 = RADIX_BINS, b2 = RADIX_BINS, b3 = RADIX_BINS; /* RADIX_BINS: no key's bin */
        if (w0 + 1 < wanted) r1 = region[w0 + 1], b1 = bins[w0 + 1];
        if (w0 + 2 < wanted) r2 = region[w0 + 2], b2 = bins[w0 + 2];
        if (w0 + 3 < wanted) r3 = region[w0 + 3], b3 = bins[w0 + 3];
        int64_t n0 = 0, n1 = 0, n2 = 0, n3 = 0;
        for (int64_t k = 0; k < count; ++k) {
            const uint32_t key = keys[k], d = (key >> shift) & mask;
            r0[n0] = key, n0 += d == b0;
            r1[n1] = key, n1 += d == b1;
            r2[n2] = key, n2 += d == b2;
            r3[n3] = key, n3 += d == b3;
        }
        const int64_t n[4] = {n0, n1, n2, n3};
        for (int64_t j = 0; j < 4 && w0 + j < wanted; ++j) filled[w0 + j] = n[j];
    }
    int64_t local[MAX_RANKS];
    for (int64_t w = 0; w < wanted; ++w) {
        const int64_t below = start[bins[w]];
        for (int64_t i = first[w]; i < first[w + 1]; ++i) local[i - first[w]] = ranks[i] - below;
        select_ranks(region[w], filled[w], shift - RADIX_BITS, local, first[w + 1] - first[w], out + first[w], at);
    }
}

/* For each of `layers` float32 tensors of n elements: its sample is all of x (positions NULL,
 * m == n) or x[positions[0..m)]; out[l * nk + i] = the ks[i]-th smallest value of the sample
 * (0-based, ks ascending, any nk). `scratch` holds 4 * m + 256 uint32. select_ranks' tables hold
 * MAX_RANKS ranks, so more ranks are selected MAX_RANKS at a time from the same keys (a
 * selection only reorders the keys, never changes them). */
void gf_order_stats(const float **xs, int64_t layers, const int64_t *positions, int64_t m, const int64_t *ks, int64_t nk, uint32_t *scratch,
                    float *out) {
    uint32_t *keys = scratch, *spare = scratch + m, picked[MAX_RANKS];
    for (int64_t l = 0; l < layers; ++l) {
        const float *x = xs[l];
        if (positions == NULL)
            for (int64_t k = 0; k < m; ++k) keys[k] = float_key(x[k]);
        else
            for (int64_t k = 0; k < m; ++k) {
                /* a sample of a large layer is a cache miss per key: ask for keys ahead of time */
                if (k + 32 < m) __builtin_prefetch(&x[positions[k + 32]]);
                keys[k] = float_key(x[positions[k]]);
            }
        for (int64_t c = 0; c < nk; c += MAX_RANKS) {
            const int64_t chunk = nk - c < MAX_RANKS ? nk - c : MAX_RANKS;
            select_ranks(keys, m, 32 - RADIX_BITS, ks + c, chunk, picked, spare);
            for (int64_t i = 0; i < chunk; ++i) out[l * nk + c + i] = key_float(picked[i]);
        }
    }
}

/* gf_order_stats and then gf_pre_activation_stats centred on each layer's order statistic
 * ks[pivot_k] (written to pivots[layer]): one call, so a background thread runs the whole
 * batch without taking the GIL in between. */
void gf_activation_stats(const float **xs, int64_t layers, const int64_t *positions, int64_t m, const int64_t *ks, int64_t nk, int64_t pivot_k,
                         uint32_t *scratch, float *picked, float *pivots, int64_t batch, int64_t units, int64_t rest, int has_lower,
                         double lower, int has_upper, double upper, int inclusive, double band_lower, double band_upper,
                         int32_t *unit_counts, double *out, int threads) {
    gf_order_stats(xs, layers, positions, m, ks, nk, scratch, picked);
    for (int64_t l = 0; l < layers; ++l) pivots[l] = picked[l * nk + pivot_k];
    gf_pre_activation_stats(xs, layers, batch, units, rest, pivots, has_lower, lower, has_upper, upper, inclusive, band_lower, band_upper,
                            unit_counts, out, threads);
}
