/*
 * alloc.c - the tensor allocator of one lua_State: a bounded cache of freed
 * large blocks in front of aligned_alloc/free (docs/design.md "Memory ownership").
 *
 * Why: a Lua loop such as `c = a + b` on 4 MB tensors makes a new result per
 * call, and the collector frees the temporaries in batches. glibc serves each
 * large block from fresh pages (it unmaps freed large blocks or trims the heap
 * top once the batch is back), so every result paid ~150 page faults plus the
 * zeroing of 4 MB by the kernel: `a + b` cost 7x the same add in place. Keeping
 * recently freed blocks and handing them out again for the same size removes
 * that, without mallopt (which is process-global and not ours to change).
 *
 * Rules:
 * - only blocks of at least MO__CACHE_MIN_BYTES are cached (smaller ones are
 *   reused by malloc itself, and tensors of fewer bytes do not come here at all); a request takes a cached block of exactly its
 *   size (the temporaries of one loop share a shape) whose address satisfies
 *   the requested alignment; fresh blocks are allocated exactly as the core's
 *   default allocator does;
 * - the cache holds at most MO__CACHE_SLOTS blocks and MO__CACHE_BUDGET bytes;
 *   a freed block that does not fit evicts the oldest ones (a new size is the
 *   likelier to come again), and a block bigger than the whole budget goes
 *   straight back to free();
 * - the cache is reference counted: one reference for the state, one per live
 *   block it handed out. Storage can outlive its lua_State (a host holding a
 *   handle); when the state closes, the cached blocks are freed and the cache
 *   lives on, pass-through, until its last block comes back.
 * - a host may release storage from any thread (storage reference counts are
 *   atomic): the cache's counts are atomic too and its list takes a spin lock.
 *
 * Huge pages (Linux): a fresh block of at least MO__HUGE_BYTES (2 MB) is
 * allocated 2 MB-aligned and its whole 2 MB regions are given
 * madvise(MADV_HUGEPAGE), so the kernel backs them with transparent huge
 * pages where it can ("enabled" set to always or madvise). A 4 MB tensor then
 * needs 2 TLB entries instead of 1024: `c = a + b` on {1024, 1024} float32
 * walks three such blocks (a, the new c, and the previous result the Lua
 * variable still held), ~3000 4 KB pages, about what the core's second-level
 * TLB holds, and ran 1.3-1.8x slower than on huge pages; x:sum(2) over 16 MB
 * gained ~20%. The tail of a block past its last whole 2 MB region keeps
 * ordinary pages (a 4 MB + 128 byte block does not pin a third huge page);
 * the alignment costs address space only. Blocks still come from and go back
 * to aligned_alloc/free, so ASan and valgrind see them as any heap block.
 *
 * The collector (mo__gc_account, below) is told about every new tensor's
 * bytes, from the cache or not (a reused block is as live as a fresh one),
 * before the tensor is made; the live bytes counted here drive a full
 * collection when they double. The cached bytes are idle memory outside the
 * collector's view, bounded by the budget.
 */
#if defined(__linux__)
#define _DEFAULT_SOURCE /* madvise; before any system header */
#endif
#include "binding.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

enum {
    MO__CACHE_MIN_BYTES = 64 * 1024,
    MO__CACHE_SLOTS = 64,
};
#define MO__CACHE_BUDGET ((size_t)64 * 1024 * 1024)
/* the x86-64 and AArch64 (4 KB base pages) huge page; blocks of this size and up get them */
#define MO__HUGE_BYTES ((size_t)2 * 1024 * 1024)
/* how many tensor bytes to gather before one report to the collector */
#define MO__GC_BATCH_BYTES ((size_t)4 * 1024 * 1024)

typedef struct mo__block {
    void *ptr;
    size_t size; /* as requested: the core passes the same size to alloc and free */
} mo__block;

typedef struct mo__cache {
    atomic_size_t live;  /* bytes of the blocks handed out and not yet freed */
    atomic_size_t refs;  /* 1 while the state is open + 1 per live block from here */
    atomic_flag lock;    /* guards open, n, bytes and blocks */
    int open;            /* 0 after the state closed: free() everything */
    int n;               /* blocks[0..n-1], oldest first */
    size_t bytes;        /* their total size */
    mo__block blocks[MO__CACHE_SLOTS];
} mo__cache;

/* The state's registry anchor: a userdata holding the cache pointer and the
 * allocator handed to the core; its __gc closes the cache when the state does. */
typedef struct mo__alloc_anchor {
    mo__cache *cache;
    mo_allocator alloc;
    size_t pending;   /* tensor bytes made since the last report to the collector */
    size_t base;      /* Lua heap + live tensor bytes after the last full collection */
} mo__alloc_anchor;

static const char anchor_key = 'a';

/* A spin lock: the sections are a few loads and stores (free() runs outside),
 * and contention needs a host releasing a tensor on another thread meanwhile. */
static void cache_lock(mo__cache *c)
{
    while (atomic_flag_test_and_set_explicit(&c->lock, memory_order_acquire)) continue;
}

static void cache_unlock(mo__cache *c)
{
    atomic_flag_clear_explicit(&c->lock, memory_order_release);
}

static void cache_unref(mo__cache *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) free(c);
}

/* Takes block i off the list (under the lock). */
static void *take_block(mo__cache *c, int i)
{
    void *p = c->blocks[i].ptr;
    c->bytes -= c->blocks[i].size;
    c->n--;
    for (int j = i; j < c->n; j++) c->blocks[j] = c->blocks[j + 1];
    return p;
}

/* A new block, as the core's default allocator makes it (aligned_alloc wants a
 * multiple of the alignment), 2 MB-aligned with huge pages advised when it is
 * that big (see the top of the file). */
static void *fresh_block(size_t size, size_t align)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const int huge = size >= MO__HUGE_BYTES;
    if (huge && align < MO__HUGE_BYTES) align = MO__HUGE_BYTES;
#endif
    if (size > SIZE_MAX - (align - 1)) return NULL;
    const size_t bytes = (size + align - 1) & ~(align - 1);
    void *p = aligned_alloc(align, bytes == 0 ? align : bytes);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    /* advice only: a kernel without THP says EINVAL and the block keeps small pages */
    if (p != NULL && huge) (void)madvise(p, size & ~(MO__HUGE_BYTES - 1), MADV_HUGEPAGE);
#endif
    return p;
}

static void *cache_alloc(void *ud, size_t size, size_t align)
{
    mo__cache *c = ud;
    void *p = NULL;
    if (size >= MO__CACHE_MIN_BYTES) {
        cache_lock(c);
        /* newest first: the most recently freed block is the likeliest in cache */
        for (int i = c->n - 1; c->open && i >= 0; i--) {
            if (c->blocks[i].size == size && (uintptr_t)c->blocks[i].ptr % align == 0) {
                p = take_block(c, i);
                break;
            }
        }
        cache_unlock(c);
    }
    if (p == NULL) {
        p = fresh_block(size, align);
        if (p == NULL) return NULL;
    }
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->live, size, memory_order_relaxed);
    return p;
}

static void cache_free(void *ud, void *ptr, size_t size)
{
    mo__cache *c = ud;
    atomic_fetch_sub_explicit(&c->live, size, memory_order_relaxed);
    void *evicted[MO__CACHE_SLOTS + 1];
    int ne = 0;
    if (size < MO__CACHE_MIN_BYTES || size > MO__CACHE_BUDGET) {
        evicted[ne++] = ptr;
    } else {
        cache_lock(c);
        if (!c->open) {
            evicted[ne++] = ptr;
        } else {
            while (c->n > 0 && (c->n == MO__CACHE_SLOTS || c->bytes + size > MO__CACHE_BUDGET))
                evicted[ne++] = take_block(c, 0);
            c->blocks[c->n].ptr = ptr;
            c->blocks[c->n].size = size;
            c->n++;
            c->bytes += size;
        }
        cache_unlock(c);
    }
    for (int i = 0; i < ne; i++) free(evicted[i]);
    cache_unref(c);
}

/* __gc of the anchor: the state is closing (the anchor lives in the registry).
 * Tensors finalized after this free through the cache's pass-through path. */
static int anchor_gc(lua_State *L)
{
    mo__alloc_anchor *a = lua_touserdata(L, 1);
    if (a == NULL || a->cache == NULL) return 0;
    mo__cache *c = a->cache;
    a->cache = NULL;
    void *blocks[MO__CACHE_SLOTS];
    int n = 0;
    cache_lock(c);
    c->open = 0;
    while (c->n > 0) blocks[n++] = take_block(c, 0);
    cache_unlock(c);
    for (int i = 0; i < n; i++) free(blocks[i]);
    cache_unref(c);
    return 0;
}

static mo__alloc_anchor *new_anchor(lua_State *L)
{
    mo__alloc_anchor *a = lua_newuserdatauv(L, sizeof *a, 0);
    a->cache = NULL;
    a->pending = 0;
    a->base = 0;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, anchor_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    mo__cache *c = calloc(1, sizeof *c);
    if (c == NULL) luaL_error(L, "out of memory");
    atomic_init(&c->live, 0);
    atomic_init(&c->refs, 1);
    atomic_flag_clear(&c->lock);
    c->open = 1;
    a->cache = c;
    a->alloc.alloc = cache_alloc;
    a->alloc.free = cache_free;
    a->alloc.ud = c;
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &anchor_key);
    lua_pop(L, 1);
    return a;
}

static mo__alloc_anchor *get_anchor(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &anchor_key) == LUA_TUSERDATA) {
        mo__alloc_anchor *a = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return a;
    }
    lua_pop(L, 1);
    return new_anchor(L);
}

/*
 * Small blocks (under MO__CACHE_MIN_BYTES): malloc with the alignment done by
 * hand, the pointer malloc returned stored just below the block:
 *   raw ... [raw pointer][block: size bytes, `align`-aligned]
 * Why not aligned_alloc (the core's default): glibc serves it through
 * memalign, which bypasses malloc's per-thread cache and splits and merges
 * chunks on every call; for a 16-element `a + b` that was 40% of the call
 * (0.6 us). No state: the allocator is a constant, no registry lookup.
 */
static void *small_alloc(void *ud, size_t size, size_t align)
{
    (void)ud;
    const size_t extra = align + sizeof(void *); /* align >= sizeof(void *): MO_ALIGN */
    if (size > SIZE_MAX - extra) return NULL;
    char *raw = malloc(size + extra);
    if (raw == NULL) return NULL;
    const uintptr_t at = ((uintptr_t)raw + sizeof(void *) + align - 1) & ~(uintptr_t)(align - 1);
    char *p = raw + (at - (uintptr_t)raw);
    memcpy(p - sizeof(void *), &raw, sizeof raw);
    return p;
}

static void small_free(void *ud, void *ptr, size_t size)
{
    (void)ud, (void)size;
    void *raw;
    memcpy(&raw, (char *)ptr - sizeof raw, sizeof raw);
    free(raw);
}

static const mo_allocator small_allocator = {small_alloc, small_free, NULL};

const mo_allocator *mo__allocator(lua_State *L, size_t bytes)
{
    /* Small blocks are never cached: they skip the registry lookup and the two
     * atomic counts (a 16-element `a + b` is ~0.5 us). */
    if (bytes < MO__CACHE_MIN_BYTES) return &small_allocator;
    mo__alloc_anchor *a = get_anchor(L);
    /* NULL (the core's default) once the state is closing */
    return a->cache ? &a->alloc : NULL;
}

/* The Lua heap plus the live tensor bytes of this state. */
static size_t total_bytes(lua_State *L, const mo__alloc_anchor *a)
{
    size_t heap = (size_t)lua_gc(L, LUA_GCCOUNT) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB);
    size_t live = a->cache ? atomic_load_explicit(&a->cache->live, memory_order_relaxed) : 0;
    return heap > SIZE_MAX - live ? SIZE_MAX : heap + live;
}

void mo__gc_account(lua_State *L, size_t numel)
{
    /* Tensor memory comes from this allocator, which Lua's collector never
     * sees: it counts ~200 bytes per tensor, so a loop making 1 MB temporaries
     * would pile up gigabytes before a cycle. Two reports, in floats made:
     * - every MO__GC_BATCH_BYTES, a collector step as if Lua had allocated
     *   them (paces the incremental collector; in generational mode, the
     *   standalone lua5.4's default, a young collection). Batching because a
     *   step costs about a mark of the whole Lua heap: a report per tensor made
     *   a loop of 256 KB temporaries 3x slower.
     * - a full collection whenever the Lua heap plus the live tensor bytes
     *   reach twice what survived the last one (Lua's own pause rule, counting
     *   the memory it cannot see; the cost of a full collection, a mark of the
     *   heap, is paid once per heap-sized allocation). Steps alone never trigger a major generational collection
     *   (they add debt, not heap size), so tensors that grew old before dying
     *   were never freed: a loop of 4 MB temporaries grew without bound. */
    if (numel < 256) return; /* small tensors are not worth the calls */
    if (!lua_gc(L, LUA_GCISRUNNING)) return;
    mo__alloc_anchor *a = get_anchor(L);
    size_t bytes = numel > SIZE_MAX / sizeof(float) ? SIZE_MAX : numel * sizeof(float);
    a->pending = bytes > SIZE_MAX - a->pending ? SIZE_MAX : a->pending + bytes;
    if (a->pending < MO__GC_BATCH_BYTES) return;
    size_t kb = a->pending / 1024;
    a->pending = 0;
    if (total_bytes(L, a) / 2 > a->base) {
        lua_gc(L, LUA_GCCOLLECT);
        a->base = total_bytes(L, a);
        return;
    }
    lua_gc(L, LUA_GCSTEP, kb > (size_t)INT_MAX ? INT_MAX : (int)kb);
}
