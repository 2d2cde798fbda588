/*
 * ctest_files.h - scratch files for the C tests that read and write files
 * (test_idx.c, test_ckpt.c): paths inside one directory, whole-file reads and writes.
 * The including test sets `ctest_dir` (a fresh mkdtemp directory) before use.
 */
#ifndef CTEST_FILES_H
#define CTEST_FILES_H

#include <stdio.h>
#include <stdlib.h>

static char ctest_dir[64];

/* ctest_dir/name in a static buffer; two alternate, so two paths may be live at once. */
static const char *path_of(const char *name)
{
    static char buf[2][256];
    static int which;
    which ^= 1;
    snprintf(buf[which], sizeof buf[which], "%s/%s", ctest_dir, name);
    return buf[which];
}

/* The whole file in a malloc'ed buffer (the caller frees), or NULL. */
static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(n > 0 ? (size_t)n : 1);
    *len = p ? fread(p, 1, (size_t)(n > 0 ? n : 0), f) : 0;
    fclose(f);
    return p;
}

/* Writes len bytes as the whole file. */
static void spit(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(buf, 1, len, f);
    fclose(f);
}

#endif /* CTEST_FILES_H */
