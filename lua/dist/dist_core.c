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

/* all_reduce(t, op [, divide_by]): t (contiguous) in place; with divide_by, every element
 * is divided by it afterwards ("mean": the sum divided by the world size). */
static int d_all_reduce(lua_State *L)
{
    const char *fname = "all_reduce_";
    check_running(L, fname);
    mo_tensor *t = check_buffer(L, 1, fname);
    MPI_Op op = check_op(L, 2, fname);
    lua_Number div = luaL_optnumber(L, 3, 0);
    int n = check_count(L, t->numel, fname);
    check_mpi(L, MPI_Allreduce(MPI_IN_PLACE, mo_tensor_ptr(t), n, mpi_type_of(t), op, MPI_COMM_WORLD),
              fname);
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

/* reduce_scatter(t, op): t (contiguous, the same element count on every rank) is reduced
 * over ranks and each rank's own part (shard_of) is written back into that part of its t;
 * the rest of t keeps its local values. MPI takes no overlapping send and receive buffers,
 * so the part arrives in a temporary first (its bytes: the part's size). */
static int d_reduce_scatter(lua_State *L)
{
    const char *fname = "reduce_scatter_";
    check_running(L, fname);
    MPI_Op op = check_op(L, 2, fname);
    int size = world_size(), me = world_rank();
    size_t n = check_buffer(L, 1, fname)->numel;
    int *cnt = (int *)lua_newuserdatauv(L, (size_t)size * sizeof *cnt, 0);
    size_t first = 0, count = 0;
    for (int r = 0; r < size; r++) {
        shard_of(n, size, r, &first, &count);
        cnt[r] = check_count(L, count, fname);
    }
    shard_of(n, size, me, &first, &count);
    /* 8 bytes an element: room for either dtype (the tensor is read after this allocation) */
    void *tmp = lua_newuserdatauv(L, count > 0 ? count * sizeof(double) : 1, 0);
    mo_tensor *t = check_buffer(L, 1, fname); /* after the allocations */
    check_mpi(L, MPI_Reduce_scatter(mo_tensor_ptr(t), tmp, cnt, mpi_type_of(t), op, MPI_COMM_WORLD),
              fname);
    if (count > 0) memcpy(elem_at(t, first), tmp, count * mo_dtype_size(t->dtype));
    lua_pushinteger(L, (lua_Integer)first);
    lua_pushinteger(L, (lua_Integer)count);
    return 2;
}

/* all_gather_parts(t): t (contiguous, the same element count on every rank) holds this
 * rank's part (shard_of) up to date; afterwards every rank's t holds every part (ZeRO's
 * parameter gather, in place: no second buffer). */
static int d_all_gather_parts(lua_State *L)
{
    const char *fname = "all_gather_parts";
    check_running(L, fname);
    int size = world_size();
    size_t n = check_buffer(L, 1, fname)->numel;
    int *cnt = (int *)lua_newuserdatauv(L, 2 * (size_t)size * sizeof *cnt, 0);
    int *disp = cnt + size;
    for (int r = 0; r < size; r++) {
        size_t first = 0, count = 0;
        shard_of(n, size, r, &first, &count);
        cnt[r] = check_count(L, count, fname);
        disp[r] = check_count(L, first, fname);
    }
    mo_tensor *t = check_buffer(L, 1, fname); /* after the allocation */
    check_mpi(L, MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, mo_tensor_ptr(t), cnt, disp,
                                mpi_type_of(t), MPI_COMM_WORLD),
              fname);
    return 0;
}

/* ---- non-blocking all-reduce (DataParallel's buckets) ---- */

/* A request keeps its own handle on the tensor's storage (so the memory MPI writes into
 * stays allocated even if every Lua reference goes away) and the tensor userdata as its
 * user value. */
typedef struct request {
    MPI_Request req;
    mo_tensor hold; /* a share of the bucket's tensor; empty once finished */
    int active;
} request;

static void request_finish(request *r)
{
    r->active = 0;
    mo_tensor_release(&r->hold);
}

/* iall_reduce(t, first0, count) -> request: starts summing t[first0 .. first0+count-1]
 * (contiguous t) over all ranks in place. */
static int d_iall_reduce(lua_State *L)
{
    const char *fname = "iall_reduce";
    check_running(L, fname);
    lua_Integer first = luaL_checkinteger(L, 2), count = luaL_checkinteger(L, 3);
    request *r = (request *)lua_newuserdatauv(L, sizeof *r, 1);
    r->active = 0;
    r->req = MPI_REQUEST_NULL;
    mo_tensor_init(&r->hold);
    luaL_setmetatable(L, REQUEST_MT);
    mo_tensor *t = check_buffer(L, 1, fname); /* after the allocations */
    if (first < 0 || count < 0 || (size_t)first > t->numel || (size_t)count > t->numel - (size_t)first)
        luaL_error(L, "%s: range %I+%I outside a tensor of %I elements", fname, first, count,
                   (lua_Integer)t->numel);
    int n = check_count(L, (size_t)count, fname);
    mo__check(L, mo_tensor_share(&r->hold, t), fname);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    int rc = MPI_Iallreduce(MPI_IN_PLACE, elem_at(t, (size_t)first), n, mpi_type_of(t), MPI_SUM,
                            MPI_COMM_WORLD, &r->req);
    if (rc != MPI_SUCCESS) request_finish(r);
    check_mpi(L, rc, fname);
    r->active = 1;
    return 1;
}

/* req:wait(): blocks until the reduction is done (at once when it already is). */
static int r_wait(lua_State *L)
{
    request *r = (request *)luaL_checkudata(L, 1, REQUEST_MT);
    if (r->active) {
        int rc = MPI_Wait(&r->req, MPI_STATUS_IGNORE);
        request_finish(r);
        check_mpi(L, rc, "wait");
    }
    return 0;
}

/* req:test() -> done (lets MPI progress the reduction without blocking). */
static int r_test(lua_State *L)
{
    request *r = (request *)luaL_checkudata(L, 1, REQUEST_MT);
    int done = 1;
    if (r->active) {
        int rc = MPI_Test(&r->req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS || done) request_finish(r);
        check_mpi(L, rc, "test");
    }
    lua_pushboolean(L, done);
    return 1;
}

/* A request collected while running is waited for: MPI cannot cancel a collective, and its
 * buffer must stay valid until it ends (the other ranks take part in it too). */
static int r_gc(lua_State *L)
{
    request *r = (request *)luaL_checkudata(L, 1, REQUEST_MT);
    if (r->active) {
        if (state == 1) MPI_Wait(&r->req, MPI_STATUS_IGNORE);
        request_finish(r);
    }
    return 0;
}

int luaopen_moonopt_dist_core(lua_State *L);
int luaopen_moonopt_dist_core(lua_State *L)
{
    static const luaL_Reg req_methods[] = {
        {"wait", r_wait}, {"test", r_test}, {NULL, NULL},
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
