/*
 * rng.c - the seeded random generator: xoshiro256** (Blackman & Vigna, 2018)
 * with its state filled from one 64-bit seed by splitmix64, as its authors
 * recommend. Everything up to the uniform doubles is integer arithmetic and
 * exact, so a seed gives the same stream on every machine; normals go through
 * libm's log/cos/sin in double and are rounded to float.
 *
 * The state lives in the caller's mo_rng (no global state): the Lua side
 * keeps one per lua_State.
 */
#include "moonopt_internal.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void mo_rng_seed(mo_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    /* splitmix64 never yields four zero words in a row, so the state is never all zero */
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    r->spare = 0.0;
    r->has_spare = 0;
}

uint64_t mo_rng_next(mo_rng *r)
{
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double mo_rng_uniform(mo_rng *r)
{
    /* the top 53 bits (the best ones of xoshiro**) scaled by 2^-53: [0, 1) */
    return (double)(mo_rng_next(r) >> 11) * 0x1.0p-53;
}

/* [0, 1) in 24 bits, exact in float32. */
static float uniform24(mo_rng *r)
{
    return (float)(mo_rng_next(r) >> 40) * 0x1.0p-24f;
}

double mo_rng_normal(mo_rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    /* Box-Muller: u1 in (0, 1] so log(u1) is finite; both outputs are used */
    const double u1 = 1.0 - mo_rng_uniform(r);
    const double u2 = mo_rng_uniform(r);
    const double rad = sqrt(-2.0 * log(u1));
    const double theta = 6.283185307179586476925 * u2; /* 2*pi */
    r->spare = rad * sin(theta);
    r->has_spare = 1;
    return rad * cos(theta);
}

uint64_t mo_rng_below(mo_rng *r, uint64_t n)
{
    if (n == 0) return 0; /* documented precondition n > 0; stay defined anyway */
    /* Reject the lowest (2^64 mod n) values so every residue is equally likely. */
    const uint64_t threshold = (0 - n) % n;
    for (;;) {
        const uint64_t x = mo_rng_next(r);
        if (x >= threshold) return x % n;
    }
}

/* The elements of t (element type TYPE) in row-major order, for any strides. */
#define FOR_EACH_ELEMENT(t, TYPE, x, stmt)                                      \
    do {                                                                        \
        mo__iter it_;                                                           \
        const mo_tensor *ops_[1] = {t};                                         \
        mo__iter_init(&it_, 1, ops_);                                           \
        for (size_t r_ = 0; r_ < it_.rows; r_++, mo__iter_next(&it_))           \
            for (size_t j_ = 0; j_ < it_.n; j_++) {                             \
                TYPE *x = (TYPE *)it_.p[0] + (ptrdiff_t)j_ * it_.inner[0];      \
                stmt;                                                           \
            }                                                                   \
    } while (0)

mo_status mo_rand_uniform(mo_tensor *t, mo_rng *r, double lo_, double hi_)
{
    if (!r) return MO_ERR_ARG;
    const mo_tensor *ts[1] = {t};
    MO_TRY(mo__check_live(1, ts));
    if (t->dtype == MO_FLOAT64) {
        if (!isfinite(lo_) || !isfinite(hi_) || lo_ > hi_ || !isfinite(hi_ - lo_)) return MO_ERR_ARG;
        const double width = hi_ - lo_;
        FOR_EACH_ELEMENT(t, double, x, {
            double v = lo_ + width * mo_rng_uniform(r);
            if (v >= hi_ && hi_ > lo_) v = nextafter(hi_, lo_);
            *x = v;
        });
        return MO_OK;
    }
    const float lo = (float)lo_, hi = (float)hi_;
    if (!isfinite(lo) || !isfinite(hi) || lo > hi) return MO_ERR_ARG;
    /* in double: hi - lo of two floats does not overflow and is (nearly) exact */
    const double base = (double)lo, width = (double)hi - (double)lo;
    FOR_EACH_ELEMENT(t, float, x, {
        float v = (float)(base + width * (double)uniform24(r));
        /* rounding to float can reach hi; keep the interval half-open */
        if (v >= hi && hi > lo) v = nextafterf(hi, lo);
        *x = v;
    });
    return MO_OK;
}

mo_status mo_rand_normal(mo_tensor *t, mo_rng *r, double mean, double sd)
{
    if (!r) return MO_ERR_ARG;
    const mo_tensor *ts[1] = {t};
    MO_TRY(mo__check_live(1, ts));
    if (t->dtype == MO_FLOAT64) {
        if (!isfinite(mean) || !isfinite(sd) || sd < 0.0) return MO_ERR_ARG;
        FOR_EACH_ELEMENT(t, double, x, *x = mean + sd * mo_rng_normal(r));
        return MO_OK;
    }
    /* float32: the parameters as floats, as before float64 existed */
    const float meanf = (float)mean, sdf = (float)sd;
    if (!isfinite(meanf) || !isfinite(sdf) || sdf < 0.0f) return MO_ERR_ARG;
    const double m = (double)meanf, s = (double)sdf;
    FOR_EACH_ELEMENT(t, float, x, *x = (float)(m + s * mo_rng_normal(r)));
    return MO_OK;
}

mo_status mo_randperm(size_t *perm, size_t n, mo_rng *r)
{
    if (!r || (n > 0 && !perm)) return MO_ERR_ARG;
    for (size_t i = 0; i < n; i++) perm[i] = i;
    /* Fisher-Yates, from the end: swap i with a uniform j in [0, i] */
    for (size_t i = n; i > 1; i--) {
        const size_t j = (size_t)mo_rng_below(r, (uint64_t)i);
        const size_t tmp = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = tmp;
    }
    return MO_OK;
}
