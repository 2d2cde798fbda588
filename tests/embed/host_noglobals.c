/*
 * host_noglobals.c - the core keeps no global mutable state (what makes its
 * kernels reentrant and two hosts, or threads, independent): no object file
 * of core/ defines a data symbol in a writable section (.data, .bss, TLS,
 * common). Const tables of pointers live in .data.rel.ro under -fPIC, which
 * the loader makes read-only after relocation: those are fine.
 *
 * Reads `objdump -h -t $BUILD/core/ *.o` (BUILD from the environment, as
 * tests/run.sh sets it, else the build directory this test was built for).
 * Sanitizer builds add writable bookkeeping of their own (ASan, UBSan): their
 * sections and symbols are told apart by name, and section sizes are only
 * checked in builds without them.
 *
 * The one exception is core/threadpool.o: the process-wide thread pool, whose
 * state is shared on purpose and guarded by its own locks (docs/design.md
 * "Threads"). Its file is skipped by name; every other file is checked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "moonopt.h"

#ifndef MO_TEST_BUILD_DIR
#define MO_TEST_BUILD_DIR "build"
#endif

/* Whether a section name is writable data. */
static int writable_section(const char *sec)
{
    if (strncmp(sec, ".data.rel.ro", 12) == 0) return 0;
    return strcmp(sec, ".data") == 0 || strncmp(sec, ".data.", 6) == 0 ||
           strcmp(sec, ".bss") == 0 || strncmp(sec, ".bss.", 5) == 0 ||
           strncmp(sec, ".tdata", 6) == 0 || strncmp(sec, ".tbss", 5) == 0 ||
           strcmp(sec, "*COM*") == 0;
}

/* Names the compiler's instrumentation owns. */
static int sanitizer_name(const char *name)
{
    return name[0] == '.' || strstr(name, "asan") != NULL || strstr(name, "ubsan") != NULL ||
           strstr(name, "__sancov") != NULL || strstr(name, "__gcov") != NULL;
}

typedef struct scan {
    int files, symbols, sections;
    int sanitized;         /* some file refers to the sanitizer runtimes */
    int bad;               /* writable data symbols found */
    int quiet;             /* do not print them (the self-test) */
    char sec_note[4096];   /* non-empty writable sections, reported only without sanitizers */
    char current[512];     /* the file being read */
    int exempt;            /* the current file is the thread pool's */
    int exempt_seen;       /* it was found (so the exemption names a real file) */
} scan;

/* The file allowed to hold global state (docs/design.md "Threads"). */
static int exempt_file(const char *path)
{
    const char *base = strrchr(path, '/');
    return strcmp(base ? base + 1 : path, "threadpool.o") == 0;
}

/*
 * One line of objdump output:
 *   "build/core/ops.o:     file format elf64-x86-64"          a new file
 *   "  3 .data         00000000  0000000000000000 ..."          a section header
 *   "0000000000000000 l     O .bss\t0000000000000004 counter"   a symbol
 */
static void scan_line(scan *s, const char *line)
{
    const char *ff = strstr(line, ":     file format ");
    if (ff != NULL) {
        s->files++;
        snprintf(s->current, sizeof s->current, "%.*s", (int)(ff - line), line);
        s->exempt = exempt_file(s->current);
        if (s->exempt) s->exempt_seen = 1;
        return;
    }
    if (s->exempt) return;
    const char *tab = strchr(line, '\t');
    if (tab != NULL) {
        /* the section is the last word before the tab; 'O' among the flags marks an object */
        const char *start = tab;
        while (start > line && start[-1] != ' ') start--;
        char sec[128];
        snprintf(sec, sizeof sec, "%.*s", (int)(tab - start), start);
        char size[64], name[256];
        if (sscanf(tab + 1, "%63s %255s", size, name) != 2) return;
        s->symbols++;
        if (strstr(name, "__asan_") != NULL || strstr(name, "__ubsan_") != NULL) s->sanitized = 1;
        int object = 0;
        for (const char *p = line + 17; p < start && p < line + 24; p++)
            if (*p == 'O') object = 1;
        if (object && writable_section(sec) && !sanitizer_name(name)) {
            if (!s->quiet)
                printf("# %s: writable data symbol '%s' in %s (size 0x%s)\n", s->current, name,
                       sec, size);
            s->bad++;
        }
        return;
    }
    int idx;
    char sec[128], size[64];
    if (sscanf(line, " %d %127s %63s", &idx, sec, size) == 3 && strlen(size) == 8) {
        s->sections++;
        if (writable_section(sec) && strtoul(size, NULL, 16) != 0) {
            size_t used = strlen(s->sec_note);
            snprintf(s->sec_note + used, sizeof s->sec_note - used, "# %s: %s has 0x%s bytes\n",
                     s->current, sec, size);
        }
    }
}

TEST(the_scanner_flags_what_it_should)
{
    /* lines as objdump writes them: a mutable global must be caught, const tables not */
    scan s;
    memset(&s, 0, sizeof s);
    s.quiet = 1;
    scan_line(&s, "x.o:     file format elf64-x86-64");
    scan_line(&s, "0000000000000000 l     O .bss\t0000000000000004 counter");
    scan_line(&s, "0000000000000000 g     O .data\t0000000000000008 table");
    scan_line(&s, "0000000000000004       O *COM*\t0000000000000004 common_var");
    scan_line(&s, "0000000000000000 l     O .tbss\t0000000000000004 tls_var");
    scan_line(&s, "0000000000000000 l     O .data.rel.ro\t0000000000000050 unary_tab");
    scan_line(&s, "0000000000000000 l     O .rodata\t0000000000000010 names");
    scan_line(&s, "0000000000000000 l    d  .data\t0000000000000000 .data");
    scan_line(&s, "0000000000000000 g     F .text\t0000000000000010 mo_fill");
    CHECK(s.bad == 4);
    CHECK(s.symbols == 8);
    scan_line(&s, "  3 .bss          00000010  0000000000000000  0000000000000000  00000040  2**2");
    CHECK(s.sections == 1 && strstr(s.sec_note, ".bss has 0x00000010") != NULL);
    /* the thread pool's file is the one exception */
    scan_line(&s, "build/core/threadpool.o:     file format elf64-x86-64");
    scan_line(&s, "0000000000000000 l     O .bss\t0000000000000004 P_size");
    CHECK(s.bad == 4 && s.exempt_seen);
    scan_line(&s, "build/core/ops.o:     file format elf64-x86-64");
    scan_line(&s, "0000000000000000 l     O .bss\t0000000000000004 counter");
    CHECK(s.bad == 5);
}

TEST(core_objects_have_no_writable_data)
{
    const char *build = getenv("BUILD");
    if (build == NULL || build[0] == '\0') build = MO_TEST_BUILD_DIR;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "objdump -h -t %s/core/*.o 2>&1", build);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    if (p == NULL) return;
    scan s;
    memset(&s, 0, sizeof s);
    char line[1024];
    while (fgets(line, sizeof line, p) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        scan_line(&s, line);
    }
    int rc = pclose(p);
    CHECK(rc == 0);
    if (rc != 0) printf("# '%s' failed (is binutils' objdump installed?)\n", cmd);
    /* not vacuous: every core file was read and had symbols and sections */
    CHECK(s.files >= 10);
    CHECK(s.symbols > 100 && s.sections >= s.files);
    CHECK(s.bad == 0);
    CHECK(s.exempt_seen);
    if (!s.sanitized) {
        CHECK(s.sec_note[0] == '\0');
        if (s.sec_note[0] != '\0') printf("%s", s.sec_note);
    }
}

int main(void)
{
    RUN(the_scanner_flags_what_it_should);
    RUN(core_objects_have_no_writable_data);
    return ctest_summary();
}
