/*
 * dist_core.c - the C module "moonopt.dist_core": MPI collectives on moonopt tensors.
 *
 * The public module is lua/moonopt/dist.lua; it checks arguments at the Lua level, makes
 * non-contiguous tensors contiguous (and copies results back), allocates outputs and
 * turns 1-based ranks into MPI's 0-based ones. This file only moves contiguous tensor
 * memory through MPI, so the core (core/) and the binding (lua/binding/) stay free of MPI.
 * It links libmpi, the core (libmoonopt.a) and the binding's argument helpers; in the
 * process it is a second copy of them, which is harmless: the tensor userdata is recognised
 * by its registry metatable ("moonopt.Tensor"), and only stateless functions are called.
 *
 * Errors: MPI_COMM_WORLD gets MPI_ERRORS_RETURN, so a failed call returns its code and
 * becomes a Lua error "<function>: MPI error: <MPI_Error_string>". A rank that dies makes
 * mpirun end the whole job (Open MPI's default), so no survivor waits forever.
 *
 * Every collective here is called by every rank in the same order (MPI's rule); the Lua
 * layer checks that the ranks agree on sizes first (one small all-reduce), so a mismatch
 * is the same Lua error on every rank instead of a truncation or a hang.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "binding.h"

#define REQUEST_MT "moonopt.dist.Request"

/* 0: MPI not started by us yet; 1: running; 2: finalized (MPI cannot start again). */
static int state = 0;

/* A duplicate of MPI_COMM_WORLD for the second stage of the non-blocking ordered sums
 * (below): MPI wants the collectives of one communicator started in the same order on
 * every rank, and a rank learns that a bucket's first stage is done at its own moment. */
static MPI_Comm gather_comm = MPI_COMM_NULL;

/* The one place that maps a tensor's element type to MPI's: float32 today (a float64
 * tensor type becomes one more branch here). */
static MPI_Datatype mpi_type_of(const mo_tensor *t)
{
    return t->dtype == MO_FLOAT64 ? MPI_DOUBLE : MPI_FLOAT;
}

/* Element i of t's memory (contiguous t, either dtype). */
static void *elem_at(const mo_tensor *t, size_t i)
{
    return (char *)mo_tensor_ptr(t) + i * mo_dtype_size(t->dtype);
}

/* Raises "fname: MPI error: <MPI's text>" unless rc is MPI_SUCCESS. */
static void check_mpi(lua_State *L, int rc, const char *fname)
{
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING + 1];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
    msg[len] = '\0';
    luaL_error(L, "%s: MPI error: %s", fname, len > 0 ? msg : "(no message)");
}

static void check_running(lua_State *L, const char *fname)
{
    if (state == 0) luaL_error(L, "%s: MPI is not initialised (call dist.init() first)", fname);
    if (state == 2) luaL_error(L, "%s: MPI has been finalized (dist.finalize() was called)", fname);
}

/* The live, contiguous tensor at idx (the Lua layer passes contiguous ones; a view that is
 * not is refused rather than read with the wrong strides). */
static mo_tensor *check_buffer(lua_State *L, int idx, const char *fname)
{
    mo_tensor *t = mo__checktensor(L, idx, fname);
    if (!mo_tensor_is_contiguous(t)) mo__argerror(L, idx, fname, "tensor must be contiguous");
    return t;
}

/* An element count MPI can take (its counts are int). */
static int check_count(lua_State *L, size_t n, const char *fname)
{
    if (n > (size_t)INT_MAX)
        luaL_error(L, "%s: %I elements is more than one MPI call takes (%d)", fname,
                   (lua_Integer)n, INT_MAX);
    return (int)n;
}

static MPI_Op check_op(lua_State *L, int idx, const char *fname)
{
    const char *op = luaL_optstring(L, idx, "sum");
    if (strcmp(op, "sum") == 0) return MPI_SUM;
    if (strcmp(op, "max") == 0) return MPI_MAX;
    if (strcmp(op, "min") == 0) return MPI_MIN;
    mo__argerror(L, idx, fname, "op must be \"sum\", \"max\" or \"min\", got \"%s\"", op);
    return MPI_SUM;
}

static int world_size(void)
{
    int n = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

static int world_rank(void)
{
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

/* init() -> rank (0-based), size. Starts MPI once; later calls return the same values. */
static int d_init(lua_State *L)
{
    if (state == 2) luaL_error(L, "init: MPI has been finalized and cannot start again");
    if (state == 0) {
        int already = 0;
        MPI_Initialized(&already);
        if (!already) {
            int provided = 0;
            int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
            if (rc != MPI_SUCCESS) luaL_error(L, "init: MPI_Init failed (error %d)", rc);
        }
        check_mpi(L, MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "init");
        check_mpi(L, MPI_Comm_dup(MPI_COMM_WORLD, &gather_comm), "init");
        check_mpi(L, MPI_Comm_set_errhandler(gather_comm, MPI_ERRORS_RETURN), "init");
        state = 1;
    }
    lua_pushinteger(L, world_rank());
    lua_pushinteger(L, world_size());
    return 2;
}

/* state() -> "uninitialised" | "running" | "finalized" */
static int d_state(lua_State *L)
{
    static const char *const names[] = {"uninitialised", "running", "finalized"};
    lua_pushstring(L, names[state]);
    return 1;
}

static int d_finalize(lua_State *L)
{
    if (state == 1) {
        state = 2;
        if (gather_comm != MPI_COMM_NULL) MPI_Comm_free(&gather_comm);
        check_mpi(L, MPI_Finalize(), "finalize");
    }
    return 0;
}

static int d_barrier(lua_State *L)
{
    check_running(L, "barrier");
    check_mpi(L, MPI_Barrier(MPI_COMM_WORLD), "barrier");
    return 0;
}

/* abort(code): ends every rank of the job now (MPI_Abort). */
static int d_abort(lua_State *L)
{
    lua_Integer code = luaL_optinteger(L, 1, 1);
    if (state == 1) MPI_Abort(MPI_COMM_WORLD, (int)code);
    exit((int)code); /* not reached under MPI; without it the process still ends */
}

static int d_wtime(lua_State *L)
{
    lua_pushnumber(L, MPI_Wtime());
    return 1;
}

/* agree(n) -> min, max of the integer n over all ranks (one all-reduce of 2 values). The
 * Lua layer checks sizes with it so every rank raises the same error. */
static int d_agree(lua_State *L)
{
    check_running(L, "agree");
    long long v[2];
    v[0] = (long long)luaL_checkinteger(L, 1);
    v[1] = -v[0];
    check_mpi(L, MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD), "agree");
    lua_pushinteger(L, (lua_Integer)-v[1]);
    lua_pushinteger(L, (lua_Integer)v[0]);
    return 2;
}

/* broadcast(t, root0): rank root0's t into every rank's t. */
static int d_broadcast(lua_State *L)
{
    const char *fname = "broadcast_";
    check_running(L, fname);
    mo_tensor *t = check_buffer(L, 1, fname);
    lua_Integer root = luaL_checkinteger(L, 2);
    if (root < 0 || root >= world_size()) mo__argerror(L, 2, fname, "root out of range");
    int n = check_count(L, t->numel, fname);
    check_mpi(L, MPI_Bcast(mo_tensor_ptr(t), n, mpi_type_of(t), (int)root, MPI_COMM_WORLD), fname);
    return 0;
}

/* reduce_numbers(list, op) -> a new list: the elementwise op ("sum", "max", "min") of
 * every rank's list of Lua numbers, as doubles (ZeRO's step counts and scalar state: a
 * float32 tensor would round them). Every rank passes a list of the same length. */
static int d_reduce_numbers(lua_State *L)
{
    const char *fname = "reduce_numbers";
    check_running(L, fname);
    luaL_checktype(L, 1, LUA_TTABLE);
    MPI_Op op = check_op(L, 2, fname);
    lua_Integer n = luaL_len(L, 1);
    int count = check_count(L, (size_t)n, fname);
    lua_createtable(L, count, 0);
    double *v = (double *)lua_newuserdatauv(L, (size_t)(count > 0 ? count : 1) * sizeof *v, 0);
    for (int i = 0; i < count; i++) {
        lua_rawgeti(L, 1, i + 1);
        int isnum = 0;
        v[i] = (double)lua_tonumberx(L, -1, &isnum);
        if (!isnum) luaL_error(L, "%s: element %d is not a number", fname, i + 1);
        lua_pop(L, 1);
    }
    check_mpi(L, MPI_Allreduce(MPI_IN_PLACE, v, count, MPI_DOUBLE, op, MPI_COMM_WORLD), fname);
    for (int i = 0; i < count; i++) {
        lua_pushnumber(L, (lua_Number)v[i]);
        lua_rawseti(L, -3, i + 1);
    }
    lua_pop(L, 1);
    return 1;
}

/* counts(n) -> {n of rank 1, n of rank 2, ...}: every rank's element count. */
static int d_counts(lua_State *L)
{
    check_running(L, "all_gather");
    long long mine = (long long)luaL_checkinteger(L, 1);
    int size = world_size();
    lua_createtable(L, size, 0); /* allocates first: nothing is read before it */
    long long *all = (long long *)lua_newuserdatauv(L, (size_t)size * sizeof *all, 0);
    check_mpi(L, MPI_Allgather(&mine, 1, MPI_LONG_LONG, all, 1, MPI_LONG_LONG, MPI_COMM_WORLD),
              "all_gather");
    for (int r = 0; r < size; r++) {
        lua_pushinteger(L, (lua_Integer)all[r]);
        lua_rawseti(L, -3, r + 1);
    }
    lua_pop(L, 1);
    return 1;
}

/* Reads counts (a table of `size` element counts) into ints with their displacements;
 * returns the total. cnt and disp hold `size` ints. */
static size_t read_counts(lua_State *L, int idx, int size, int *cnt, int *disp, const char *fname)
{
    size_t total = 0;
    for (int r = 0; r < size; r++) {
        lua_rawgeti(L, idx, r + 1);
        lua_Integer c = lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (c < 0 || c > INT_MAX) luaL_error(L, "%s: bad element count %I", fname, c);
        cnt[r] = (int)c;
        disp[r] = check_count(L, total, fname);
        total += (size_t)c;
    }
    check_count(L, total, fname);
    return total;
}

/* all_gather(src, dst, counts): every rank's src, in rank order, into dst; counts[r] is
 * rank r's element count (from counts()), dst holds their sum. */
static int d_all_gather(lua_State *L)
{
    const char *fname = "all_gather";
    check_running(L, fname);
    luaL_checktype(L, 3, LUA_TTABLE);
    int size = world_size();
    /* the count arrays first (an allocation), then the tensors' pointers */
    int *cnt = (int *)lua_newuserdatauv(L, 2 * (size_t)size * sizeof *cnt, 0);
    int *disp = cnt + size;
    size_t total = read_counts(L, 3, size, cnt, disp, fname);
    mo_tensor *src = check_buffer(L, 1, fname);
    mo_tensor *dst = check_buffer(L, 2, fname);
    if ((size_t)cnt[world_rank()] != src->numel || total != dst->numel)
        luaL_error(L, "%s: counts do not match the tensors", fname);
    if (src->dtype != dst->dtype) luaL_error(L, "%s: source and result dtypes differ", fname);
    check_mpi(L, MPI_Allgatherv(mo_tensor_ptr(src), cnt[world_rank()], mpi_type_of(src),
                                mo_tensor_ptr(dst), cnt, disp, mpi_type_of(dst), MPI_COMM_WORLD),
              fname);
    return 0;
}

/* shard(n, size, r) -> first (0-based), count: rank r's part of n elements: the first
 * n % size ranks hold one element more (the split reduce_scatter_ and ZeRO use). */
static void shard_of(size_t n, int size, int r, size_t *first, size_t *count)
{
    size_t base = n / (size_t)size, extra = n % (size_t)size, ur = (size_t)r;
    *count = base + (ur < extra ? 1 : 0);
    *first = ur * base + (ur < extra ? ur : extra);
}

/* ---- the ordered sum: every element summed in rank order, whoever owns it ----
 *
 * MPI_Allreduce and MPI_Reduce_scatter may add the ranks' values in different orders (and
 * groupings: ((a + b) + c) or (a + (b + c))), which changes float results in the last bits
 * at 3 and more ranks. DataParallel's buckets and ZeRO's reduce-scatter both sum through
 * the code below instead, so every element is ((v1 + v2) + v3) + ... with v_r rank r's
 * value, whichever collective, bucket or part it travels in: a ZeRO run is then bit for bit
 * a DataParallel run. It moves the bytes of a reduce-scatter: every rank sends rank r its
 * part r (MPI_Alltoallv), receives everyone's copy of its own part into a scratch buffer of
 * size x part, and adds them in rank order; an all-reduce gathers the sums afterwards
 * (MPI_Allgatherv in place), the bytes of a ring all-reduce: 2 (N - 1) / N per element.
 * At 2 ranks every element is one addition, the same in either order (a + b == b + a in
 * IEEE arithmetic), so MPI's own collectives, faster on one machine, are used there. */

/* Whether the rank order must be enforced by hand (see above). */
static int needs_order(int size)
{
    return size > 2;
}

/* How n elements are split over the ranks, in the v-collectives' terms. cnt[r], disp[r]:
 * rank r's part of the buffer; rcnt[r] = this rank's count and rdisp[r] = r x that count:
 * where rank r's copy of this rank's part lands in the scratch buffer. The four arrays hold
 * `size` ints each, in the memory the caller gives (4 x size ints). */
typedef struct plan {
    int *cnt, *disp, *rcnt, *rdisp;
    int size, me;
    size_t first, count; /* this rank's part */
} plan;

/* Fills p for n elements: the parts of shard_of, or with counts_idx > 0 the table of
 * per-rank counts there (ZeRO's whole-tensor split for LAMB), which must add up to n. */
static void make_plan(lua_State *L, plan *p, int *ints, size_t n, int counts_idx, const char *fname)
{
    int size = world_size();
    p->size = size;
    p->me = world_rank();
    p->cnt = ints;
    p->disp = ints + size;
    p->rcnt = ints + 2 * (size_t)size;
    p->rdisp = ints + 3 * (size_t)size;
    size_t total = 0;
    for (int r = 0; r < size; r++) {
        size_t first = 0, count = 0;
        if (counts_idx > 0) {
            lua_rawgeti(L, counts_idx, r + 1);
            lua_Integer c = lua_tointeger(L, -1);
            lua_pop(L, 1);
            if (c < 0) luaL_error(L, "%s: bad element count %I for rank %d", fname, c, r + 1);
            first = total;
            count = (size_t)c;
        } else {
            shard_of(n, size, r, &first, &count);
        }
        total = first + count;
        p->cnt[r] = check_count(L, count, fname);
        p->disp[r] = check_count(L, first, fname);
        if (r == p->me) {
            p->first = first;
            p->count = count;
        }
    }
    if (total != n) luaL_error(L, "%s: the parts hold %I elements, the tensor %I", fname,
                               (lua_Integer)total, (lua_Integer)n);
    int mine = check_count(L, p->count, fname);
    check_count(L, p->count * (size_t)size, fname); /* the scratch buffer's displacements */
    for (int r = 0; r < size; r++) {
        p->rcnt[r] = mine;
        p->rdisp[r] = r * mine;
    }
}

/* The scratch buffer of an ordered sum: size x part elements of dtype dt (at least 1 byte),
 * or NULL when malloc fails. The caller frees it. */
static void *scratch_for(const plan *p, mo_dtype dt)
{
    size_t bytes = p->count * (size_t)p->size * mo_dtype_size(dt);
    return malloc(bytes > 0 ? bytes : 1);
}

/* dst[i] = ((s_0[i] + s_1[i]) + s_2[i]) + ..., s_r = scratch + r x count: rank order. Each
 * addition is rounded to the element type (a float store between them). */
static void add_in_rank_order(void *dst, const void *scratch, size_t count, int size, mo_dtype dt)
{
    if (count == 0) return;
    memcpy(dst, scratch, count * mo_dtype_size(dt));
    if (dt == MO_FLOAT64) {
        double *d = dst;
        for (int r = 1; r < size; r++) {
            const double *s = (const double *)scratch + (size_t)r * count;
            for (size_t i = 0; i < count; i++) d[i] += s[i];
        }
    } else {
        float *d = dst;
        for (int r = 1; r < size; r++) {
            const float *s = (const float *)scratch + (size_t)r * count;
            for (size_t i = 0; i < count; i++) d[i] += s[i];
        }
    }
}

/* The ordered sum of the n elements at base (dtype dt) into this rank's part, blocking:
 * returns MPI's code. */
static int ordered_sum(void *base, mo_dtype dt, const plan *p, void *scratch)
{
    MPI_Datatype ty = dt == MO_FLOAT64 ? MPI_DOUBLE : MPI_FLOAT;
    int rc = MPI_Alltoallv(base, p->cnt, p->disp, ty, scratch, p->rcnt, p->rdisp, ty, MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS)
        add_in_rank_order((char *)base + p->first * mo_dtype_size(dt), scratch, p->count, p->size, dt);
    return rc;
}

/* Every rank's part of the n elements at base into every rank's buffer (in place). */
static int gather_parts(void *base, mo_dtype dt, const plan *p)
{
    return MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, base, p->cnt, p->disp,
                          dt == MO_FLOAT64 ? MPI_DOUBLE : MPI_FLOAT, MPI_COMM_WORLD);
}

/* The optional counts table at idx (0 when absent). */
static int counts_arg(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    return idx;
}

/* all_reduce(t, op [, divide_by [, ordered]]): t (contiguous) in place; with divide_by,
 * every element is divided by it afterwards ("mean": the sum divided by the world size).
 * ordered (a sum only): the rank-order sum above instead of MPI_Allreduce. */
static int d_all_reduce(lua_State *L)
{
    const char *fname = "all_reduce_";
    check_running(L, fname);
    MPI_Op op = check_op(L, 2, fname);
    lua_Number div = luaL_optnumber(L, 3, 0);
    int size = world_size();
    int ordered = lua_toboolean(L, 4) && op == MPI_SUM && needs_order(size);
    int *ints = (int *)lua_newuserdatauv(L, 4 * (size_t)size * sizeof *ints, 0);
    mo_tensor *t = check_buffer(L, 1, fname); /* after the allocation */
    int n = check_count(L, t->numel, fname);
    int rc;
    if (ordered) {
        plan p;
        make_plan(L, &p, ints, t->numel, 0, fname);
        void *scratch = scratch_for(&p, t->dtype);
        if (scratch == NULL) luaL_error(L, "%s: out of memory", fname);
        rc = ordered_sum(mo_tensor_ptr(t), t->dtype, &p, scratch);
        free(scratch);
        if (rc == MPI_SUCCESS) rc = gather_parts(mo_tensor_ptr(t), t->dtype, &p);
    } else {
        rc = MPI_Allreduce(MPI_IN_PLACE, mo_tensor_ptr(t), n, mpi_type_of(t), op, MPI_COMM_WORLD);
    }
    check_mpi(L, rc, fname);
    if (div != 0 && t->dtype == MO_FLOAT64) {
        double *p = mo_tensor_ptr(t);
        for (int i = 0; i < n; i++) p[i] /= div;
    } else if (div != 0) {
        float *p = mo_tensor_ptr(t);
        const float d = (float)div;
        for (int i = 0; i < n; i++) p[i] /= d;
    }
    return 0;
}

/* reduce_scatter(t, op [, counts]) -> first, count: t (contiguous, the same element count
 * on every rank) is reduced over ranks and each rank's own part (shard_of, or counts[r]
 * elements for rank r) is written back into that part of its t; the rest of t keeps its
 * local values. A sum is the rank-order sum; max and min (exact in any order) go through
 * MPI_Reduce_scatter (so does a sum at 2 ranks), whose result arrives in the scratch buffer first (MPI takes no
 * overlapping send and receive buffers). */
static int d_reduce_scatter(lua_State *L)
{
    const char *fname = "reduce_scatter_";
    check_running(L, fname);
    MPI_Op op = check_op(L, 2, fname);
    int counts_idx = counts_arg(L, 3);
    int size = world_size();
    int *ints = (int *)lua_newuserdatauv(L, 4 * (size_t)size * sizeof *ints, 0);
    mo_tensor *t = check_buffer(L, 1, fname); /* after the allocation */
    plan p;
    make_plan(L, &p, ints, t->numel, counts_idx, fname);
    void *scratch = scratch_for(&p, t->dtype);
    if (scratch == NULL) luaL_error(L, "%s: out of memory", fname);
    int rc;
    if (op == MPI_SUM && needs_order(size)) {
        rc = ordered_sum(mo_tensor_ptr(t), t->dtype, &p, scratch);
    } else {
        rc = MPI_Reduce_scatter(mo_tensor_ptr(t), scratch, p.cnt, mpi_type_of(t), op, MPI_COMM_WORLD);
        if (rc == MPI_SUCCESS && p.count > 0)
            memcpy(elem_at(t, p.first), scratch, p.count * mo_dtype_size(t->dtype));
    }
    free(scratch);
    check_mpi(L, rc, fname);
    lua_pushinteger(L, (lua_Integer)p.first);
    lua_pushinteger(L, (lua_Integer)p.count);
    return 2;
}

/* all_gather_parts(t [, counts]): t (contiguous, the same element count on every rank)
 * holds this rank's part (shard_of, or the counts table's) up to date; afterwards every
 * rank's t holds every part (ZeRO's parameter gather, in place: no second buffer). */
static int d_all_gather_parts(lua_State *L)
{
    const char *fname = "all_gather_parts";
    check_running(L, fname);
    int counts_idx = counts_arg(L, 2);
    int size = world_size();
    int *ints = (int *)lua_newuserdatauv(L, 4 * (size_t)size * sizeof *ints, 0);
    mo_tensor *t = check_buffer(L, 1, fname); /* after the allocation */
    plan p;
    make_plan(L, &p, ints, t->numel, counts_idx, fname);
    check_mpi(L, gather_parts(mo_tensor_ptr(t), t->dtype, &p), fname);
    return 0;
}

/* ---- non-blocking ordered all-reduce (DataParallel's buckets) ----
 *
 * A request runs the ordered sum of one bucket in two non-blocking stages: 1, the parts
 * exchanged (MPI_Ialltoallv); then the rank-order add of this rank's part, done by the
 * wait() or test() that finds stage 1 complete; 2, the sums gathered (MPI_Iallgatherv in
 * place, on gather_comm). Every rank starts the stage-1 exchanges in bucket order on
 * MPI_COMM_WORLD; a rank finds an exchange complete at its own moment, so the stage-2
 * gathers go on a communicator of their own, and the caller advances the requests in the
 * order it started them, stopping at the first still in stage 1 (progress() below): the
 * gathers then start in bucket order on every rank too. It keeps its own handle on the tensor's storage (so the memory MPI writes into
 * stays allocated even if every Lua reference goes away) and the tensor userdata as its
 * user value; the count arrays live in the request itself (MPI reads them until the
 * collective completes) and the scratch buffer is malloc'd and freed when it ends. */
typedef struct request {
    MPI_Request req;
    mo_tensor hold; /* a share of the bucket's tensor; empty once finished */
    int stage;      /* 0 finished, 1 exchanging parts, 2 gathering sums */
    size_t first;   /* the bucket's first element in hold */
    plan p;         /* the bucket's split; its arrays point into ints */
    void *scratch;
    int ints[];     /* 4 x size */
} request;

static void request_finish(request *r)
{
    r->stage = 0;
    free(r->scratch);
    r->scratch = NULL;
    mo_tensor_release(&r->hold);
}

static void *bucket_base(request *r)
{
    return elem_at(&r->hold, r->first);
}

/* Stage 1 is complete: adds in rank order and starts stage 2. */
static int request_gather(request *r)
{
    mo_dtype dt = r->hold.dtype;
    add_in_rank_order((char *)bucket_base(r) + r->p.first * mo_dtype_size(dt), r->scratch, r->p.count,
                      r->p.size, dt);
    free(r->scratch);
    r->scratch = NULL;
    r->stage = 2;
    int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, bucket_base(r), r->p.cnt, r->p.disp,
                             mpi_type_of(&r->hold), gather_comm, &r->req);
    if (rc != MPI_SUCCESS) request_finish(r);
    return rc;
}

/* iall_reduce(t, first0, count [, ordered = true]) -> request: starts the ordered sum of
 * t[first0 .. first0+count-1] (contiguous t) over all ranks, in place; ordered = false:
 * MPI's own MPI_Iallreduce (faster at 3+ ranks on one machine, in MPI's order). */
static int d_iall_reduce(lua_State *L)
{
    const char *fname = "iall_reduce";
    check_running(L, fname);
    lua_Integer first = luaL_checkinteger(L, 2), count = luaL_checkinteger(L, 3);
    int size = world_size();
    size_t bytes = sizeof(request) + 4 * (size_t)size * sizeof(int);
    request *r = (request *)lua_newuserdatauv(L, bytes, 1);
    r->stage = 0;
    r->req = MPI_REQUEST_NULL;
    r->scratch = NULL;
    mo_tensor_init(&r->hold);
    luaL_setmetatable(L, REQUEST_MT);
    mo_tensor *t = check_buffer(L, 1, fname); /* after the allocations */
    if (first < 0 || count < 0 || (size_t)first > t->numel || (size_t)count > t->numel - (size_t)first)
        luaL_error(L, "%s: range %I+%I outside a tensor of %I elements", fname, first, count,
                   (lua_Integer)t->numel);
    make_plan(L, &r->p, r->ints, (size_t)count, 0, fname);
    r->first = (size_t)first;
    mo__check(L, mo_tensor_share(&r->hold, t), fname);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    int ordered = lua_isnoneornil(L, 4) || lua_toboolean(L, 4);
    if (!ordered || !needs_order(size)) { /* one stage: MPI's own sum (see needs_order) */
        r->stage = 2;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, bucket_base(r), check_count(L, (size_t)count, fname),
                                mpi_type_of(t), MPI_SUM, gather_comm, &r->req);
        if (rc != MPI_SUCCESS) request_finish(r);
        check_mpi(L, rc, fname);
        return 1;
    }
    r->scratch = scratch_for(&r->p, t->dtype);
    if (r->scratch == NULL) {
        request_finish(r);
        luaL_error(L, "%s: out of memory", fname);
    }
    r->stage = 1;
    int rc = MPI_Ialltoallv(bucket_base(r), r->p.cnt, r->p.disp, mpi_type_of(t), r->scratch, r->p.rcnt,
                            r->p.rdisp, mpi_type_of(t), MPI_COMM_WORLD, &r->req);
    if (rc != MPI_SUCCESS) request_finish(r);
    check_mpi(L, rc, fname);
    return 1;
}

/* Waits for both stages (at once when they are done); returns MPI's code. */
static int request_wait(request *r)
{
    int rc = MPI_SUCCESS;
    while (r->stage != 0 && rc == MPI_SUCCESS) {
        rc = MPI_Wait(&r->req, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) break;
        if (r->stage == 1) rc = request_gather(r);
        else request_finish(r);
    }
    if (rc != MPI_SUCCESS && r->stage != 0) request_finish(r);
    return rc;
}

/* req:wait(): blocks until the reduction is done (at once when it already is). */
static int r_wait(lua_State *L)
{
    request *r = (request *)luaL_checkudata(L, 1, REQUEST_MT);
    check_mpi(L, request_wait(r), "wait");
    return 0;
}

/* req:progress() -> stage: lets MPI move the reduction on without blocking; a finished
 * stage 1 starts stage 2. Returns 0 (done), 1 (exchanging) or 2 (gathering). Call it on the
 * requests in the order they were started and stop at the first that returns 1, so every
 * rank starts the gathers in the same order. */
static int r_progress(lua_State *L)
{
    request *r = (request *)luaL_checkudata(L, 1, REQUEST_MT);
    int rc = MPI_SUCCESS;
    if (r->stage != 0) {
        int done = 0;
        rc = MPI_Test(&r->req, &done, MPI_STATUS_IGNORE);
        if (rc == MPI_SUCCESS && done && r->stage == 1) rc = request_gather(r);
        else if (rc != MPI_SUCCESS || done) request_finish(r);
    }
    check_mpi(L, rc, "progress");
    lua_pushinteger(L, r->stage);
    return 1;
}

/* A request collected while running is waited for: MPI cannot cancel a collective, and its
 * buffer must stay valid until it ends (the other ranks take part in it too). */
static int r_gc(lua_State *L)
{
    request *r = (request *)luaL_checkudata(L, 1, REQUEST_MT);
    if (r->stage != 0) {
        if (state == 1) (void)request_wait(r);
        request_finish(r);
    }
    return 0;
}

int luaopen_moonopt_dist_core(lua_State *L);
int luaopen_moonopt_dist_core(lua_State *L)
{
    static const luaL_Reg req_methods[] = {
        {"wait", r_wait}, {"progress", r_progress}, {NULL, NULL},
    };
    static const luaL_Reg funcs[] = {
        {"init", d_init}, {"state", d_state}, {"finalize", d_finalize}, {"barrier", d_barrier},
        {"abort", d_abort}, {"wtime", d_wtime}, {"agree", d_agree}, {"all_reduce", d_all_reduce},
        {"broadcast", d_broadcast}, {"counts", d_counts}, {"all_gather", d_all_gather},
        {"reduce_scatter", d_reduce_scatter}, {"all_gather_parts", d_all_gather_parts},
        {"reduce_numbers", d_reduce_numbers},
        {"iall_reduce", d_iall_reduce}, {NULL, NULL},
    };
    if (luaL_newmetatable(L, REQUEST_MT)) {
        luaL_newlib(L, req_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, r_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    return 1;
}
