/*
 * test_files.c - how the core opens files (core/file.c): readers refuse FIFOs,
 * directories, devices and symbolic links to them at once, without blocking;
 * writers create missing parent directories (not through a regular file) and
 * remove the temporaries dead writers of the same path left, and only those.
 *
 * A regression that blocks in open(2) must fail, not hang the suite: alarm()
 * kills the test after 20 s (the run prints no summary line, so tests/run.sh
 * counts a failure). Files go to a fresh mkdtemp directory removed at the end.
 */
#include "moonopt.h"
#include "moonopt_ckpt.h"
#include "moonopt_data.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctest.h"
#include "ctest_files.h"

static char why[MO_CKPT_WHY_SIZE];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Every reader refuses `path` with MO_ERR_IO, a message containing `kind`, quickly. */
static int refused_by_every_reader(const char *path, const char *kind)
{
    int ok = 1;
    double t0 = now();
    mo_ckpt *c = (mo_ckpt *)1;
    why[0] = '\0';
    mo_status st = mo_ckpt_read_file(&c, path, NULL, why, sizeof why);
    if (st != MO_ERR_IO || c != NULL || !strstr(why, kind)) {
        printf("# ckpt %s: status %d, why \"%s\", want \"%s\"\n", path, (int)st, why, kind);
        ok = 0;
    }
    mo_tensor t;
    mo_tensor_init(&t);
    why[0] = '\0';
    st = mo_idx_read_file(&t, path, 1.0f, 0.0f, NULL, why, sizeof why);
    if (st != MO_ERR_IO || mo_tensor_alive(&t) || !strstr(why, kind)) {
        printf("# idx %s: status %d, why \"%s\", want \"%s\"\n", path, (int)st, why, kind);
        ok = 0;
    }
    mo_tensor_release(&t);
    if (now() - t0 > 10.0) {  /* a reader that blocked or read forever; generous for loaded machines */
        printf("# %s: took %.1f s\n", path, now() - t0);
        ok = 0;
    }
    return ok;
}

TEST(readers_refuse_special_files_without_blocking)
{
    const char *fifo = path_of("fifo");
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK(refused_by_every_reader(fifo, "not a regular file but a FIFO"));
    const char *link = path_of("link-to-fifo");
    CHECK(symlink(fifo, link) == 0);
    CHECK(refused_by_every_reader(link, "not a regular file but a FIFO"));
    CHECK(refused_by_every_reader(ctest_dir, "not a regular file but a directory"));
    if (exists("/dev/zero")) CHECK(refused_by_every_reader("/dev/zero", "not a regular file but a character device"));
    CHECK(refused_by_every_reader(path_of("missing"), "cannot open: No such file or directory"));
    remove(link);
    remove(fifo);
}

TEST(writers_create_parent_directories)
{
    const char *p = path_of("a/b//c/w.bin");
    CHECK_OK(mo_file_write(p, "hello", 5, why, sizeof why));
    size_t len = 0;
    unsigned char *got = slurp(p, &len);
    CHECK(got && len == 5 && memcmp(got, "hello", 5) == 0);
    free(got);
    /* an existing tree, and an empty file */
    CHECK_OK(mo_file_write(path_of("a/b/c/empty"), NULL, 0, why, sizeof why));
    got = slurp(path_of("a/b/c/empty"), &len);
    CHECK(got && len == 0);
    free(got);

    /* a component that is a regular file: an error naming it, nothing created below it */
    CHECK_STATUS(mo_file_write(path_of("a/b/c/w.bin/d/x"), "x", 1, why, sizeof why), MO_ERR_IO);
    CHECK(strstr(why, "w.bin: it exists and is not a directory") != NULL);
    size_t n = 0;
    mo_tensor t;
    mo_tensor_init(&t);
    CHECK_OK(mo_tensor_zeros(&t, 1, &(size_t){2}, NULL));
    mo_ckpt_item it = {"w", &t};
    CHECK_STATUS(mo_ckpt_write_file(path_of("a/b/c/w.bin/x.st"), &it, 1, NULL, 0, why, sizeof why), MO_ERR_IO);
    CHECK(strstr(why, "it exists and is not a directory") != NULL);
    CHECK_STATUS(mo_idx_write_file(path_of("a/b/c/w.bin/x.idx"), &t, MO_IDX_F32, 0, why, sizeof why), MO_ERR_IO);
    CHECK(strstr(why, "it exists and is not a directory") != NULL);
    CHECK_OK(mo_ckpt_write_file(path_of("a/n1/n2/x.st"), &it, 1, NULL, 0, why, sizeof why));
    CHECK_OK(mo_idx_write_file(path_of("a/n3/x.idx.gz"), &t, MO_IDX_F32, 1, why, sizeof why));
    mo_ckpt *c = NULL;
    CHECK_OK(mo_ckpt_read_file(&c, path_of("a/n1/n2/x.st"), NULL, why, sizeof why));
    n = mo_ckpt_count(c);
    CHECK(n == 1);
    mo_ckpt_free(c);
    mo_tensor_release(&t);

    /* a name ending in '/', a target that is a directory */
    CHECK_STATUS(mo_file_write(path_of("a/b/"), "x", 1, why, sizeof why), MO_ERR_ARG);
    CHECK(strstr(why, "names a directory") != NULL);
    CHECK_STATUS(mo_file_write(path_of("a/b"), "x", 1, why, sizeof why), MO_ERR_IO);
    CHECK(strstr(why, "cannot rename") != NULL);
    CHECK_STATUS(mo_file_write("", "x", 1, why, sizeof why), MO_ERR_ARG);
    CHECK_STATUS(mo_file_write(NULL, "x", 1, why, sizeof why), MO_ERR_ARG);
}

/* This host's tag in temporary names, as core/file.c documents it. */
static void host_tag(char *out, size_t size)
{
    char name[256] = "";
    size_t n = 0;
    gethostname(name, sizeof name);
    name[sizeof name - 1] = '\0';
    for (const char *s = name; *s && *s != '.' && n < 32 && n + 1 < size; s++) {
        char ch = *s;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-';
        out[n++] = ok ? ch : '_';
    }
    out[n] = '\0';
    if (n == 0) snprintf(out, size, "host");
}

/* A pid that no longer exists: a child that has exited and been reaped. */
static long dead_pid(void)
{
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid < 0) return -1;
    waitpid(pid, NULL, 0);
    return (long)pid;
}

/* ctest_dir/name for the long names below (path_of's buffers are for short ones). */
static const char *long_path(const char *name)
{
    static char buf[2][2048];
    static int which;
    which ^= 1;
    snprintf(buf[which], sizeof buf[which], "%s/%s", ctest_dir, name);
    return buf[which];
}

/* Makes an empty file ctest_dir/<name>. */
static void touch(const char *name)
{
    spit(long_path(name), "", 0);
}

static int count_temporaries(void)
{
    DIR *d = opendir(ctest_dir);
    int n = 0;
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

TEST(a_save_removes_only_stale_temporaries_of_its_own_name)
{
    char host[40], name[8][160];
    host_tag(host, sizeof host);
    long dead = dead_pid(), dead2 = dead_pid();
    CHECK(dead > 0 && dead2 > 0);
    /* removed: dead writers of run.ckpt on this host */
    snprintf(name[0], sizeof name[0], "run.ckpt.tmp.%s.%ld.0badf00d", host, dead);
    snprintf(name[1], sizeof name[1], "run.ckpt.tmp.%s.%ld.12345678", host, dead2);
    /* kept: a live process (our parent), our own pid (another thread may be saving),
     * another host, another checkpoint's name, a longer name, a malformed suffix */
    snprintf(name[2], sizeof name[2], "run.ckpt.tmp.%s.%ld.0badf00d", host, (long)getppid());
    snprintf(name[3], sizeof name[3], "run.ckpt.tmp.%s.%ld.0badf00d", host, (long)getpid());
    snprintf(name[4], sizeof name[4], "run.ckpt.tmp.%sx.%ld.0badf00d", host, dead);
    snprintf(name[5], sizeof name[5], "other.ckpt.tmp.%s.%ld.0badf00d", host, dead);
    snprintf(name[6], sizeof name[6], "run.ckpt2.tmp.%s.%ld.0badf00d", host, dead);
    snprintf(name[7], sizeof name[7], "run.ckpt.tmp.%s.%ld.0badf00d.x", host, dead);
    for (int i = 0; i < 8; i++) touch(name[i]);
    CHECK(count_temporaries() == 8);

    /* a failed save removes nothing */
    mo_ckpt_item dup[2] = {{"x", NULL}, {"x", NULL}};
    CHECK(mo_ckpt_write_file(path_of("run.ckpt"), dup, 2, NULL, 0, why, sizeof why) != MO_OK);
    CHECK(count_temporaries() == 8);

    mo_tensor t;
    mo_tensor_init(&t);
    CHECK_OK(mo_tensor_zeros(&t, 1, &(size_t){3}, NULL));
    mo_ckpt_item it = {"x", &t};
    CHECK_OK(mo_ckpt_write_file(path_of("run.ckpt"), &it, 1, NULL, 0, why, sizeof why));
    CHECK(!exists(long_path(name[0])) && !exists(long_path(name[1])));
    for (int i = 2; i < 8; i++) {
        if (!exists(long_path(name[i]))) printf("# %s was removed\n", name[i]);
        CHECK(exists(long_path(name[i])));
    }
    CHECK(count_temporaries() == 6);

    /* the other writers sweep too: whole files, IDX files */
    snprintf(name[0], sizeof name[0], "x.svg.tmp.%s.%ld.00000000", host, dead);
    snprintf(name[1], sizeof name[1], "x.idx.tmp.%s.%ld.ffffffff", host, dead);
    touch(name[0]);
    touch(name[1]);
    CHECK_OK(mo_file_write(path_of("x.svg"), "<svg/>", 6, why, sizeof why));
    CHECK_OK(mo_idx_write_file(path_of("x.idx"), &t, MO_IDX_F32, 0, why, sizeof why));
    CHECK(!exists(long_path(name[0])) && !exists(long_path(name[1])));
    CHECK(count_temporaries() == 6);
    mo_tensor_release(&t);
}

/* rm -r of the scratch directory (no symbolic links are followed: remove() unlinks them). */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            struct stat sb;
            if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
                remove_tree(p);
            else
                remove(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

int main(void)
{
    alarm(20); /* a reader blocking in open(2) kills the test instead of hanging the suite */
    snprintf(ctest_dir, sizeof ctest_dir, "/tmp/moonopt-files-XXXXXX");
    if (!mkdtemp(ctest_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(readers_refuse_special_files_without_blocking);
    RUN(writers_create_parent_directories);
    RUN(a_save_removes_only_stale_temporaries_of_its_own_name);
    remove_tree(ctest_dir);
    return ctest_summary();
}
