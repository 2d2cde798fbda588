/*
 * fuzz_idx.c - libFuzzer target for the IDX reader (mo_idx_parse_header, mo_idx_decode):
 * raw and gzip input. Every input must be refused with a message or decode into a
 * tensor of the header's shape whose every element can be read; decoding the same
 * bytes twice gives the same values (no state survives a call).
 *
 *   make fuzz-smoke / make fuzz (mk/fuzz.mk); by hand:
 *   build-fuzz/fuzz_idx build-fuzz/corpus/idx tests/fuzz/corpus/idx
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "moonopt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[MO_IDX_WHY_SIZE];
    mo_idx_header h;
    why[0] = '\0';
    if (mo_idx_parse_header(data, size, &h, why, sizeof why) == MO_OK) {
        if (h.ndim < 0 || h.ndim > MO_MAX_DIMS || h.header_bytes != 4 + 4 * (size_t)h.ndim) abort();
    } else if (why[0] == '\0') {
        abort();
    }
    mo_tensor a, b;
    mo_tensor_init(&a);
    mo_tensor_init(&b);
    why[0] = '\0';
    mo_status st = mo_idx_decode(&a, data, size, 0.5f, 1.0f, NULL, why, sizeof why);
    if (st != MO_OK) {
        if (mo_tensor_alive(&a) || why[0] == '\0') abort();
        return 0;
    }
    if (mo_idx_decode(&b, data, size, 0.5f, 1.0f, NULL, why, sizeof why) != MO_OK) abort();
    if (!mo_tensor_same_shape(&a, &b) || !mo_tensor_is_contiguous(&a)) abort();
    if (a.numel && memcmp(mo_tensor_data(&a), mo_tensor_data(&b), a.numel * sizeof(float)) != 0) {
        /* NaN payloads compare bitwise too: the conversion is deterministic */
        abort();
    }
    mo_tensor_release(&a);
    mo_tensor_release(&b);
    return 0;
}
