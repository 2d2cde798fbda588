/*
 * moonopt_internal.h - helpers shared by the core's .c files; not installed.
 * Private names use the mo__ prefix (or are static).
 */
#ifndef MOONOPT_INTERNAL_H
#define MOONOPT_INTERNAL_H

#include "moonopt.h"

/* Return the status of `expr` from the enclosing function unless it is MO_OK. */
#define MO_TRY(expr)                          \
    do {                                      \
        mo_status mo__st = (expr);            \
        if (mo__st != MO_OK) return mo__st;   \
    } while (0)

#endif /* MOONOPT_INTERNAL_H */
