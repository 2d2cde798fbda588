/*
 * fuzz_ckpt.c - libFuzzer target for the safetensors reader (mo_ckpt_decode).
 *
 * Every input must either be refused with a message, or decode into tensors whose
 * every element can be read (ASan checks the bounds) and that survive a round trip:
 * written again with mo_ckpt_encode (metadata included) and decoded, they must come
 * back bit for bit. A broken property aborts, which libFuzzer reports as a crash.
 *
 *   make fuzz-smoke / make fuzz (mk/fuzz.mk); by hand:
 *   build-fuzz/fuzz_ckpt -dict=tests/fuzz/ckpt.dict build-fuzz/corpus/ckpt tests/fuzz/corpus/ckpt
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "moonopt.h"
#include "moonopt_ckpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads every element (so a wrong size or a dangling pointer shows) and folds the bits. */
static uint32_t touch(const mo_tensor *t)
{
    /* F64 entries read as float64 tensors: walk bytes of either dtype */
    const unsigned char *p = mo_tensor_ptr(t);
    const size_t bytes = t->numel * mo_dtype_size(t->dtype);
    uint32_t h = 0;
    for (size_t i = 0; i + 4 <= bytes; i += 4) {
        uint32_t u;
        memcpy(&u, p + i, sizeof u);
        h = h * 31u + u;
    }
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[MO_CKPT_WHY_SIZE];
    why[0] = '\0';
    mo_ckpt *c = NULL;
    mo_status st = mo_ckpt_decode(&c, data, size, NULL, why, sizeof why);
    if (st != MO_OK) {
        /* a refusal leaves nothing behind and says why */
        if (c != NULL || why[0] == '\0') abort();
        return 0;
    }
    size_t n = mo_ckpt_count(c), nmeta = mo_ckpt_meta_count(c);
    mo_ckpt_item *items = calloc(n ? n : 1, sizeof *items);
    mo_ckpt_meta *meta = calloc(nmeta ? nmeta : 1, sizeof *meta);
    uint32_t *hash = calloc(n ? n : 1, sizeof *hash);
    if (!items || !meta || !hash) abort();
    int writable = 1;
    for (size_t i = 0; i < n; i++) {
        const char *name = mo_ckpt_name(c, i);
        const mo_tensor *t = mo_ckpt_tensor(c, i);
        if (!name || !t || !mo_tensor_alive(t) || !mo_tensor_is_contiguous(t)) abort();
        if (mo_ckpt_find(c, name) != i) abort();         /* names are unique */
        hash[i] = touch(t);
        items[i].name = name;
        items[i].tensor = t;
        if (name[0] == '\0') writable = 0;                /* the writer refuses empty names */
    }
    size_t k = 0;
    for (size_t i = 0; i < nmeta; i++) {
        const char *key = mo_ckpt_meta_key(c, i), *val = mo_ckpt_meta_value(c, i);
        if (!key || !val || mo_ckpt_meta_get(c, key) != val) abort();
        if (strcmp(key, MO_CKPT_CRC_KEY) == 0) continue;
        meta[k].key = key;
        meta[k].value = val;
        k++;
    }
    if (writable) {
        unsigned char *buf = NULL;
        size_t len = 0;
        if (mo_ckpt_encode(&buf, &len, items, n, meta, k, why, sizeof why) != MO_OK) abort();
        mo_ckpt *d = NULL;
        if (mo_ckpt_decode(&d, buf, len, NULL, why, sizeof why) != MO_OK) abort();
        if (mo_ckpt_count(d) != n || mo_ckpt_meta_count(d) != k + 1) abort();
        for (size_t i = 0; i < n; i++) {
            const mo_tensor *a = mo_ckpt_tensor(c, i), *b = mo_ckpt_tensor(d, i);
            if (strcmp(mo_ckpt_name(d, i), items[i].name) != 0 || !mo_tensor_same_shape(a, b)) abort();
            if (a->dtype != b->dtype) abort();            /* F64 is written back as F64 */
            if (a->numel && memcmp(mo_tensor_ptr(a), mo_tensor_ptr(b),
                                   a->numel * mo_dtype_size(a->dtype)) != 0)
                abort();
            if (touch(b) != hash[i]) abort();
        }
        for (size_t i = 0; i < k; i++) {
            const char *v = mo_ckpt_meta_get(d, meta[i].key);
            if (!v || strcmp(v, meta[i].value) != 0) abort();
        }
        mo_ckpt_free(d);
        mo_ckpt_buffer_free(buf);
    }
    free(items);
    free(meta);
    free(hash);
    mo_ckpt_free(c);
    return 0;
}
