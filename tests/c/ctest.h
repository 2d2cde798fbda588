/*
 * ctest.h - a tiny test harness for the core's C tests (no Lua, no libraries).
 *
 *   TEST(name) { CHECK(x == 1); CHECK_NEAR(a, b, 1e-6); CHECK_OK(mo_fill(&t, 0)); }
 *   int main(void) { RUN(name); return ctest_summary(); }
 *
 * Prints one TAP-style line per test, "ok <name>" or "not ok <name>", with the
 * failing checks before it as "# file:line: expression"; tests/run.sh counts them.
 */
#ifndef CTEST_H
#define CTEST_H

#include <math.h>
#include <stdio.h>

static int ctest_failed_checks;   /* in the running test */
static int ctest_passed, ctest_failed;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            ctest_failed_checks++;                                                  \
            printf("# %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);       \
        }                                                                           \
    } while (0)

#define CHECK_OK(expr)                                                              \
    do {                                                                            \
        mo_status ctest_st = (expr);                                                \
        if (ctest_st != MO_OK) {                                                    \
            ctest_failed_checks++;                                                  \
            printf("# %s:%d: %s returned %d (%s)\n", __FILE__, __LINE__, #expr,     \
                   (int)ctest_st, mo_status_str(ctest_st));                         \
        }                                                                           \
    } while (0)

#define CHECK_STATUS(expr, want)                                                    \
    do {                                                                            \
        mo_status ctest_st = (expr);                                                \
        if (ctest_st != (want)) {                                                   \
            ctest_failed_checks++;                                                  \
            printf("# %s:%d: %s returned %d (%s), want %s\n", __FILE__, __LINE__,    \
                   #expr, (int)ctest_st, mo_status_str(ctest_st), #want);           \
        }                                                                           \
    } while (0)

/* |a - b| <= tol * max(1, |b|): relative for large values, absolute near 0. */
#define CHECK_NEAR(a, b, tol)                                                       \
    do {                                                                            \
        double ctest_a = (double)(a), ctest_b = (double)(b);                        \
        double ctest_scale = fabs(ctest_b) > 1.0 ? fabs(ctest_b) : 1.0;             \
        if (!(fabs(ctest_a - ctest_b) <= (tol) * ctest_scale)) {                    \
            ctest_failed_checks++;                                                  \
            printf("# %s:%d: %s = %.9g, want %s = %.9g (tol %g)\n", __FILE__,       \
                   __LINE__, #a, ctest_a, #b, ctest_b, (double)(tol));              \
        }                                                                           \
    } while (0)

#define TEST(name) static void name(void)

#define RUN(name)                                                                   \
    do {                                                                            \
        ctest_failed_checks = 0;                                                    \
        name();                                                                     \
        if (ctest_failed_checks) {                                                  \
            ctest_failed++;                                                         \
            printf("not ok %s\n", #name);                                           \
        } else {                                                                    \
            ctest_passed++;                                                         \
            printf("ok %s\n", #name);                                               \
        }                                                                           \
        fflush(stdout);                                                             \
    } while (0)

static int ctest_summary(void)
{
    printf("# %d tests, %d failed\n", ctest_passed + ctest_failed, ctest_failed);
    return ctest_failed ? 1 : 0;
}

#endif /* CTEST_H */
