/*
 * file.c - opening files for the core's readers and writers (see file_internal.h):
 * refusing special files without blocking, creating parent directories, atomic
 * replacement through a temporary file, and removing the temporaries a killed
 * writer left behind.
 */
#include "moonopt_internal.h"
#include "moonopt_ckpt.h"
#include "file_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void mo__say_errno(char *why, size_t why_size, const char *what, const char *name, int err)
{
    char buf[128];
    if (strerror_r(err, buf, sizeof buf) != 0) snprintf(buf, sizeof buf, "error %d", err);
    if (name)
        mo__say(why, why_size, "%s %.200s: %s", what, name, buf);
    else
        mo__say(why, why_size, "%s: %s", what, buf);
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                  */
/* ------------------------------------------------------------------------ */

static const char *kind_of(mode_t m)
{
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "of an unknown kind";
}

static int not_regular(const struct stat *sb, char *why, size_t why_size)
{
    if (S_ISREG(sb->st_mode)) return 0;
    mo__say(why, why_size, "not a regular file but %s", kind_of(sb->st_mode));
    return 1;
}

FILE *mo__open_regular(const char *path, size_t *size, mo_status *st, char *why, size_t why_size)
{
    struct stat sb;
    *st = MO_ERR_IO;
    *size = 0;
    /* stat first: a FIFO or a device is refused without being opened at all (opening a
     * FIFO blocks until a writer appears; opening a device may have side effects) */
    if (stat(path, &sb) != 0) {
        mo__say_errno(why, why_size, "cannot open", NULL, errno);
        return NULL;
    }
    if (not_regular(&sb, why, why_size)) return NULL;
    /* O_NONBLOCK: should the path have become a FIFO since the stat, open returns at once */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        mo__say_errno(why, why_size, "cannot open", NULL, errno);
        return NULL;
    }
    int flags = fstat(fd, &sb) == 0 ? fcntl(fd, F_GETFL) : -1;
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        mo__say_errno(why, why_size, "cannot stat", NULL, errno);
        close(fd);
        return NULL;
    }
    if (not_regular(&sb, why, why_size)) {
        close(fd);
        return NULL;
    }
    if (sb.st_size < 0 || (uintmax_t)sb.st_size > (uintmax_t)SIZE_MAX) {
        mo__say(why, why_size, "the file is too large for this machine's address space");
        *st = MO_ERR_OVERFLOW;
        close(fd);
        return NULL;
    }
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        mo__say_errno(why, why_size, "cannot open", NULL, errno);
        close(fd);
        return NULL;
    }
    *size = (size_t)sb.st_size;
    *st = MO_OK;
    return fp;
}

/* ------------------------------------------------------------------------ */
/* Directories                                                              */
/* ------------------------------------------------------------------------ */

/* The directory part of path ("." when there is none), in a new string. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        char *d = malloc(2);
        if (d) memcpy(d, ".", 2);
        return d;
    }
    while (slash > path && slash[-1] == '/') slash--;  /* "a//b": the directory is "a" */
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

/* Makes directory d unless it is one already. */
static mo_status one_dir(const char *d, char *why, size_t why_size)
{
    struct stat sb;
    if (stat(d, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return MO_OK;
        mo__say(why, why_size, "cannot create the directory %.200s: it exists and is not a directory", d);
        return MO_ERR_IO;
    }
    if (errno != ENOENT) {
        mo__say_errno(why, why_size, "cannot use the directory", d, errno);
        return MO_ERR_IO;
    }
    if (mkdir(d, 0777) == 0) return MO_OK;
    int err = errno;
    /* EEXIST: another process made it in the meantime, which is fine if it is a directory */
    if (err == EEXIST && stat(d, &sb) == 0 && S_ISDIR(sb.st_mode)) return MO_OK;
    mo__say_errno(why, why_size, "cannot create the directory", d, err);
    return MO_ERR_IO;
}

mo_status mo__mkdir_parents(const char *path, char *why, size_t why_size)
{
    char *dir = dir_of(path);
    if (!dir) {
        mo__say(why, why_size, "out of memory");
        return MO_ERR_NOMEM;
    }
    struct stat sb;
    mo_status st = MO_OK;
    /* the usual case, the directory exists: one stat */
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        /* each prefix ending before a '/' (and the whole), from the root down */
        size_t n = strlen(dir);
        for (size_t i = 1; st == MO_OK && i <= n; i++) {
            if ((i < n && dir[i] != '/') || dir[i - 1] == '/') continue;
            char keep = dir[i];
            dir[i] = '\0';
            st = one_dir(dir, why, why_size);
            dir[i] = keep;
        }
    }
    free(dir);
    return st;
}

/* fsync of a directory, so a rename in it survives a power cut. File systems
 * that cannot sync directories say EINVAL (or EBADF/EROFS on some): nothing to do then. */
static mo_status sync_dir(const char *path, char *why, size_t why_size)
{
    char *dir = dir_of(path);
    if (!dir) {
        mo__say(why, why_size, "out of memory");
        return MO_ERR_NOMEM;
    }
    mo_status st = MO_OK;
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        mo__say_errno(why, why_size, "cannot open the directory", dir, errno);
        st = MO_ERR_IO;
    } else {
        if (fsync(fd) != 0 && errno != EINVAL && errno != EBADF && errno != EROFS) {
            mo__say_errno(why, why_size, "cannot sync the directory", dir, errno);
            st = MO_ERR_IO;
        }
        close(fd);
    }
    free(dir);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Temporary files                                                          */
/* ------------------------------------------------------------------------ */

/* This host's name as it appears in temporary names: up to the first '.', at most 32
 * characters from [A-Za-z0-9_-] (others become '_'), "host" when there is none. So the
 * tag holds no '.', and a temporary's name splits unambiguously. */
static void host_tag(char *out, size_t size)
{
    char name[256];
    size_t n = 0;
    if (gethostname(name, sizeof name) != 0) name[0] = '\0';
    name[sizeof name - 1] = '\0';
    for (const char *s = name; *s && *s != '.' && n < 32 && n + 1 < size; s++) {
        char c = *s;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        out[n++] = ok ? c : '_';
    }
    out[n] = '\0';
    if (n == 0) snprintf(out, size, "host");
}

/* 32 bits that differ between attempts, processes and moments (not secret: the name is
 * created with O_EXCL, so a clash only costs another attempt). splitmix64's finalizer. */
static uint32_t name_bits(unsigned attempt)
{
    struct timespec ts;
    int here = 0;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) ts.tv_sec = ts.tv_nsec = 0;
    uint64_t z = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&here
                 ^ (uint64_t)getpid() << 32 ^ (uint64_t)attempt * 0x9e3779b97f4a7c15u;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return (uint32_t)(z ^ (z >> 31));
}

mo_status mo__atomic_begin(mo__atomic_file *w, const char *path, char *why, size_t why_size)
{
    w->fp = NULL;
    w->tmp = NULL;
    w->path = path;
    if (!path || !*path) {
        mo__say(why, why_size, "no file name");
        return MO_ERR_ARG;
    }
    size_t plen = strlen(path), tlen = 0;
    if (path[plen - 1] == '/') {
        mo__say(why, why_size, "the name ends in '/': it names a directory, not a file");
        return MO_ERR_ARG;
    }
    MO_TRY(mo__mkdir_parents(path, why, why_size));
    char host[40];
    host_tag(host, sizeof host);
    /* ".tmp." + host (<= 32) + "." + pid (<= 20 digits) + "." + 8 hex + NUL < 80 */
    if (mo_size_add(plen, 80, &tlen) != MO_OK) {
        mo__say(why, why_size, "the file name is too long");
        return MO_ERR_OVERFLOW;
    }
    if (!(w->tmp = malloc(tlen))) {
        mo__say(why, why_size, "out of memory");
        return MO_ERR_NOMEM;
    }
    int fd = -1;
    for (unsigned k = 0; fd < 0; k++) {
        snprintf(w->tmp, tlen, "%s.tmp.%s.%ld.%08lx", path, host, (long)getpid(), (unsigned long)name_bits(k));
        fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && (errno != EEXIST || k >= 100)) {
            mo__say_errno(why, why_size, "cannot create", w->tmp, errno);
            break;
        }
    }
    if (fd >= 0 && !(w->fp = fdopen(fd, "wb"))) {
        mo__say_errno(why, why_size, "cannot open", w->tmp, errno);
        close(fd);
        remove(w->tmp);
    }
    if (!w->fp) {
        free(w->tmp);
        w->tmp = NULL;
        return MO_ERR_IO;
    }
    return MO_OK;
}

mo_status mo__atomic_end(mo__atomic_file *w, mo_status st, char *why, size_t why_size)
{
    if (!w->tmp) return st;
    /* the bytes must be on the disk before the rename makes them the file */
    if (st == MO_OK && fflush(w->fp) != 0) {
        mo__say_errno(why, why_size, "write error", w->tmp, errno);
        st = MO_ERR_IO;
    }
    if (st == MO_OK && fsync(fileno(w->fp)) != 0) {
        mo__say_errno(why, why_size, "cannot sync", w->tmp, errno);
        st = MO_ERR_IO;
    }
    if (fclose(w->fp) != 0 && st == MO_OK) {
        mo__say_errno(why, why_size, "write error", w->tmp, errno);
        st = MO_ERR_IO;
    }
    w->fp = NULL;
    if (st == MO_OK && rename(w->tmp, w->path) != 0) {
        mo__say_errno(why, why_size, "cannot rename the temporary file to", w->path, errno);
        st = MO_ERR_IO;
    }
    if (st != MO_OK) {
        remove(w->tmp);
    } else {
        st = sync_dir(w->path, why, why_size);
        mo__sweep_temporaries(w->path);
    }
    free(w->tmp);
    w->tmp = NULL;
    return st;
}

/*
 * Whether `name` (an entry of the target's directory) is a temporary of the target whose
 * basename is base[0..blen) that a dead process of this host left: "<base>.tmp.<host>.<pid>.<8 hex>"
 * with our host tag, a pid other than ours, and kill(pid, 0) failing with ESRCH.
 *
 * Why this rule is safe: a temporary is only ever written by the process named in it, so
 * if that process no longer exists nobody can still be writing it. A live process (kill
 * succeeds, or EPERM: it exists but belongs to another user) may be saving right now, and
 * our own pid's temporaries may belong to another thread of ours: both are kept. A pid
 * reused by an unrelated process only keeps a stale file, never removes a live one. The
 * host tag keeps a shared (network) directory safe: another machine's pids mean nothing
 * here, so its temporaries are never touched. (Containers that share both a directory
 * and a host name but not a pid namespace defeat the rule; the other writer's save then
 * fails at its rename with an error, the file at `path` stays whole.)
 */
static int stale_temporary(const char *name, const char *base, size_t blen, const char *host)
{
    if (strncmp(name, base, blen) != 0 || strncmp(name + blen, ".tmp.", 5) != 0) return 0;
    const char *h = name + blen + 5;
    size_t hl = strlen(host);
    if (strncmp(h, host, hl) != 0 || h[hl] != '.') return 0;
    const char *p = h + hl + 1, *q = p;
    long pid = 0;
    for (; *q >= '0' && *q <= '9'; q++) {
        pid = pid * 10 + (*q - '0');
        if (pid > INT_MAX) return 0;
    }
    if (q == p || *q != '.') return 0;
    q++;
    for (int i = 0; i < 8; i++, q++)
        if (!((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f'))) return 0;
    if (*q != '\0' || pid <= 0 || (pid_t)pid == getpid()) return 0;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

void mo__sweep_temporaries(const char *path)
{
    /* best effort: a save that succeeded does not fail because a stale file stays */
    char *dir = dir_of(path);
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d) {
        free(dir);
        return;
    }
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t blen = strlen(base), dlen = strlen(dir);
    char host[40];
    host_tag(host, sizeof host);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!stale_temporary(e->d_name, base, blen, host)) continue;
        size_t n = dlen + 1 + strlen(e->d_name) + 1;
        char *full = malloc(n);
        if (!full) break;
        snprintf(full, n, "%s/%s", dir, e->d_name);
        remove(full);
        free(full);
    }
    closedir(d);
    free(dir);
}

/* ------------------------------------------------------------------------ */
/* Whole files                                                              */
/* ------------------------------------------------------------------------ */

const char *mo_file_kind(const char *path)
{
    struct stat sb;
    if (!path || stat(path, &sb) != 0) return NULL;
    if (S_ISREG(sb.st_mode)) return "file";
    if (S_ISDIR(sb.st_mode)) return "directory";
    if (S_ISFIFO(sb.st_mode)) return "fifo";
    if (S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode)) return "device";
    if (S_ISSOCK(sb.st_mode)) return "socket";
    return "other";
}

mo_status mo_file_write(const char *path, const void *data, size_t len, char *why, size_t why_size)
{
    if (!path || (!data && len > 0)) {
        mo__say(why, why_size, "NULL argument");
        return MO_ERR_ARG;
    }
    mo__atomic_file w;
    mo_status st = mo__atomic_begin(&w, path, why, why_size);
    if (st != MO_OK) return st;
    if (len > 0 && fwrite(data, 1, len, w.fp) != len) {
        mo__say_errno(why, why_size, "write error", w.tmp, errno);
        st = MO_ERR_IO;
    }
    return mo__atomic_end(&w, st, why, why_size);
}
