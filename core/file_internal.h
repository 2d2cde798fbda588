/*
 * file_internal.h - how the core opens the files it reads and writes (core/file.c).
 *
 * Every reader opens its path with mo__open_regular: a FIFO, a directory, a device or a
 * socket is refused before anything could block on it. Every writer goes through
 * mo__atomic_begin / mo__atomic_end: missing parent directories are created, the bytes go
 * to a temporary file next to the target, named
 *
 *     <path>.tmp.<host>.<pid>.<8 hex digits>
 *
 * that is flushed, fsync'ed and renamed over the target, and then the directory is
 * fsync'ed. After a successful rename, temporaries of the same path that a dead process
 * on this host left behind (a kill -9 in the middle of a save) are removed.
 */
#ifndef MOONOPT_FILE_INTERNAL_H
#define MOONOPT_FILE_INTERNAL_H

#include <stddef.h>
#include <stdio.h>

#include "moonopt.h"

/*
 * Opens `path` for reading when it is a regular file (after following symbolic links);
 * *size is its size. Anything else is refused without blocking: the type is checked with
 * stat before the open and again with fstat after an O_NONBLOCK open (a FIFO swapped in
 * between would otherwise block open(2) forever). Returns NULL with *st and `why` set.
 */
FILE *mo__open_regular(const char *path, size_t *size, mo_status *st, char *why, size_t why_size);

/* "what name: <strerror(err)>" (or "what: ..." when name is NULL) into why, without
 * strerror's shared static buffer (core functions may run in several threads). */
void mo__say_errno(char *why, size_t why_size, const char *what, const char *name, int err);

/* Creates the missing directories above `path` (mode 0777 less the umask). */
mo_status mo__mkdir_parents(const char *path, char *why, size_t why_size);

/* A file being written atomically. */
typedef struct mo__atomic_file {
    FILE *fp;          /* the temporary file, open for writing */
    char *tmp;         /* its name (malloc'ed) */
    const char *path;  /* the target (the caller's string) */
} mo__atomic_file;

/* Creates the parent directories and a new temporary file for `path`. */
mo_status mo__atomic_begin(mo__atomic_file *w, const char *path, char *why, size_t why_size);

/*
 * Finishes the write: when `st` is MO_OK, flushes, syncs and closes the temporary file,
 * renames it over the target, syncs the directory and removes stale temporaries of the
 * same path; otherwise (or when any of that fails) closes and removes the temporary file.
 * Returns the final status; `why` keeps the first error. Always releases w.
 */
mo_status mo__atomic_end(mo__atomic_file *w, mo_status st, char *why, size_t why_size);

/* Removes the stale temporaries of `path` (see above); `path` itself is not touched. */
void mo__sweep_temporaries(const char *path);

#endif /* MOONOPT_FILE_INTERNAL_H */
