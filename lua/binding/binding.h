/*
 * binding.h - private declarations shared by the binding's .c files.
 * Each file registers its functions into the module table through one
 * mo__open_* function that module.c calls.
 *
 * Error conventions (every file of the binding follows them):
 *   - a bad argument is reported with mo__argerror (the C function passes its
 *     own name, so the message names it even when Lua's debug information
 *     cannot, e.g. under pcall(t.get, t, 9));
 *   - a failed core call becomes a Lua error through mo__status_error
 *     ("<function>: <mo_status_str>");
 *   - user text is only ever an argument of a format, never the format.
 *
 * The collector rule (issue 10): any call that can allocate (lua_newtable,
 * lua_createtable, lua_newuserdatauv, lua_pushstring/fstring, luaL_Buffer,
 * mo__newtensor, mo_lua_newtensor, a lua_getfield that reaches an __index
 * function, ...) can run any Lua finalizer, which may free a tensor
 * (t:__gc() revokes its storage), re-point it at new storage (nn_flatten),
 * replace slots of argument tables or drop a .grad. So, across such a call:
 *   - a tensor is trusted only while a stack slot (or a user value of a
 *     pinned object) holds its userdata; a pointer taken from a table slot
 *     is not, and a list read from a user's table is copied into a table of
 *     the call's own first;
 *   - a pinned handle may go to a core function afterwards (the core checks
 *     every operand's liveness and shape), but raw data pointers, sizes and
 *     .grad values read before the allocation are re-read after it
 *     (mo__recheck), or the call does all its allocations first;
 *   - values the call reads element by element come from a private copy
 *     (totable) or are read after the last allocation.
 *
 * Message formats are lua_pushfstring's: %s %d %I (lua_Integer) %f (lua_Number) %%;
 * there is no %zu, so sizes are cast to lua_Integer (they are < 2^40).
 */
#ifndef MOONOPT_BINDING_H
#define MOONOPT_BINDING_H

#include <lauxlib.h>
#include <lua.h>

#include "moonopt_lua.h"

/* lua/binding/optim.c: adds the optimizer kernels to the module table at the top of the stack. */
void mo__open_optim(lua_State *L);
/* lua/binding/nn.c: the neural-network kernels, likewise. */
void mo__open_nn(lua_State *L);
/* lua/binding/data.c: IDX reading and batching helpers, likewise. */
void mo__open_data(lua_State *L);
/* lua/binding/checkpoint.c: safetensors reading/writing and RNG state, likewise. */
void mo__open_checkpoint(lua_State *L);
/* lua/binding/conv.c: conv2d, pooling and batch-norm kernels (issue 13), likewise. */
void mo__open_conv(lua_State *L);
/* lua/binding/threads.c: set_num_threads / get_num_threads (the core's thread pool). */
void mo__open_threads(lua_State *L);

/* lua/binding/tensor.c: creates the "moonopt.Tensor" metatable and its methods
 * table, and adds is_tensor and Tensor (the methods table) to the module table
 * at the top of the stack. Must run before the other mo__open_* functions. */
void mo__open_tensor(lua_State *L);
/* lua/binding/create.c: constructors (tensor, zeros, ..., rand, randn, randperm)
 * and the in-place random fills uniform_/normal_. */
void mo__open_create(lua_State *L);
/* lua/binding/math.c: elementwise math, reductions, operators, matmul, norm_many. */
void mo__open_math(lua_State *L);
/* lua/binding/reduce.c: the reduce family (sum ... topk, any, all). */
void mo__open_reduce(lua_State *L);

/* ---- lua/binding/shape.c: the shape family ---- */
/* permute, squeeze, unsqueeze, flatten, expand, view, reshape, transpose, t,
 * contiguous, select, chunk, split (methods; they replace tensor.c's view,
 * reshape, transpose, t, select, contiguous, so it runs after mo__open_tensor)
 * and cat, stack (module functions). */
void mo__open_shape(lua_State *L);
/* t[key] for a number or table key (t at 1, key at 2): a view. */
int mo__index(lua_State *L);
/* t[key] = value (t at 1, key at 2, value at 3): writes through the view. */
int mo__newindex(lua_State *L);
/* lua/binding/print.c: the __tostring metamethod of tensors (rows, shape, dtype). */
int mo__tensor_tostring(lua_State *L);
/* lua/binding/index.c: index_select, gather, scatter_add(_), matmul (1-d/2-d/3-d). */
void mo__open_index(lua_State *L);

/* ---- lua/binding/autograd.c (docs/autograd.md "How the tape works") ---- */

/* A tensor userdata's block: the handle, then autograd's flag bits (MO__AG_*). User
 * values: 1 .grad, 2 what the memory depends on, 3 the autograd node (a table) or the
 * name of the non-differentiable op that made it, 4 the output index in that node. */
typedef struct mo__tblock {
    mo_tensor t;
    unsigned ag;
} mo__tblock;
#define MO__AG_REQ 1u     /* requires grad */
#define MO__AG_NONLEAF 2u /* made by a recorded op: user value 3 is its node */
#define MO__AG_MARK 4u    /* made by a non-differentiable op: user value 3 is its name */
#define MO__TENSOR_UVS 4
/* kind argument of mo__ag_call_uv: an in-place write of argument 1 */
#define MO__AG_INPLACE 1
/* Creates the per-lua_State autograd state (grad mode on) unless it exists. */
void mo__ag_open(lua_State *L);
/* Adds the core._autograd plumbing table to the module table at the top and requires_grad_ / detach to the
 * methods; after mo__open_tensor. */
void mo__open_autograd(lua_State *L);
/* The autograd flags of a tensor (0: none). */
unsigned mo__ag_flags(const mo_tensor *t);
/* Clears a dying tensor's flags (from __gc); its user values are the caller's. */
void mo__ag_forget(lua_State *L, mo_tensor *t);
/* How many upvalues a dispatcher has (mo__ag_push_upvalues pushes them), and which one
 * holds the op's registered name. */
#define MO__AG_NUPVALUES 7
#define MO__AG_UV_NAME 5
/* Pushes the MO__AG_NUPVALUES upvalues of a dispatcher of f (its name and kind; the tensor
 * metatable at index mt): 1 the metatable, 2 f, 3 the autograd state, 4 the kind, 5 the
 * name, 6 and 7 autograd's anchors table (the arguments of recorded calls in progress) and
 * definitions. */
void mo__ag_push_upvalues(lua_State *L, int mt, lua_CFunction f, int kind, const char *name);
/* Runs the C function f on the current arguments as a dispatched function would
 * (recording, in-place checks and version bumps), from a C closure whose upvalues
 * 1..MO__AG_NUPVALUES are mo__ag_push_upvalues's; nameidx: the (pseudo-)index of the op's
 * name; kind 0 or MO__AG_INPLACE. Returns f's result count. */
int mo__ag_call_uv(lua_State *L, lua_CFunction f, int nameidx, int kind);
/* luaL_setfuncs of `l` into the table below the tensor metatable at the top, each
 * function wrapped by the dispatcher (the metatable stays on the stack). */
void mo__ag_setfuncs(lua_State *L, const luaL_Reg *l);
/* The most arguments (self included) the public function `name` takes, or -1 when it is
 * not checked (any number of sizes, or a kernel of the Lua modules); arity.c. */
int mo__max_args(const char *name);
/* Raises "bad argument #k to 'fname' (unexpected argument (type))", k the first argument
 * past the first max that is not nil; returns 0 when there is none. */
int mo__check_arity(lua_State *L, int max, const char *fname);
/* Pushes the per-lua_State autograd state userdata. */
void mo__ag_push_state(lua_State *L);
/* Pushes the tensor methods table. */
void mo__push_methods(lua_State *L);

/* Adds the functions of `l` to the tensor methods table (any file may add methods);
 * each gets the tensor metatable as upvalue 1 (see mo__checkarg). */
void mo__add_methods(lua_State *L, const luaL_Reg *l);
/* luaL_setfuncs into the table at the top of the stack, with the tensor
 * metatable as upvalue 1 of every function. */
void mo__setfuncs(lua_State *L, const luaL_Reg *l);

/* ---- the per-lua_State default generator (module.c) ---- */

/* The lua_State's default RNG (created by luaopen_moonopt_core, seeded with
 * MO__DEFAULT_SEED; mo.manual_seed reseeds it). Never NULL once the module is open. */
mo_rng *mo__lua_rng(lua_State *L);
#define MO__DEFAULT_SEED 0x6d6f6f6e6f7074ULL /* "moonopt" */

/* ---- errors ---- */

/* Raises "bad argument #arg to 'fname' (<message>)" (or "calling 'fname' on bad
 * self (...)" for the receiver of a method call, as luaL_argerror numbers
 * them). fmt is a lua_pushfstring format. Never returns. */
int mo__argerror(lua_State *L, int arg, const char *fname, const char *fmt, ...);
/* Raises "fname: <mo_status_str(st)>". Never returns. */
int mo__status_error(lua_State *L, mo_status st, const char *fname);
/* Raises "fname: <mo_status_str(st)>" when st is not MO_OK; returns otherwise. */
void mo__check(lua_State *L, mo_status st, const char *fname);
/* Raises "fname: shape mismatch: {2, 3} vs {3, 2}". Never returns. */
int mo__shape_error(lua_State *L, const char *fname, const mo_tensor *a, const mo_tensor *b);
/* Raises "bad argument #arg to 'fname' (<expected> expected, got <type>)". */
int mo__typeerror(lua_State *L, int arg, const char *fname, const char *expected);

/* Pushes (and returns) a short description of the value at idx for messages:
 * the number as Lua writes it ("-1", "2.5", "1.0", "inf"; "nan" for any NaN)
 * or the type name ("string", "no value"). */
const char *mo__describe(lua_State *L, int idx);

/* 1 when t has exactly ndim dimensions of the given sizes (the one shape-equality test). */
int mo__shape_is(const mo_tensor *t, int ndim, const size_t *shape);

/* "{2, 3}" into buf; returns buf. */
#define MO__SHAPE_BUF 200
const char *mo__shapestr(const mo_tensor *t, char *buf);
/* The same for a shape given as ndim sizes. */
const char *mo__shapestr_raw(int ndim, const size_t *shape, char *buf);

/* ---- checking arguments ---- */

/* The tensor userdata at idx (freed or not), or NULL when the value is not one. */
mo_tensor *mo__totensor(lua_State *L, int idx);
/* The live tensor at idx; raises a named error when it is not a tensor or is freed. */
mo_tensor *mo__checktensor(lua_State *L, int idx, const char *fname);
/* The tensor userdata at idx (freed or not), or NULL, by comparing its metatable with
 * upvalue 1: only in functions registered through mo__setfuncs / mo__add_methods (see
 * mo__checkarg). */
mo_tensor *mo__toarg(lua_State *L, int idx);
/* mo__checktensor with a fast path for C functions registered through
 * mo__setfuncs / mo__add_methods (their upvalue 1 is the tensor metatable).
 * Use it ONLY in such functions or in ones without upvalues (those take the
 * full check): with another type's metatable as upvalue 1 it would accept
 * that type's userdata as a tensor. */
mo_tensor *mo__checkarg(lua_State *L, int idx, const char *fname);
/* After a call that may have run the collector: the tensor at idx checked again
 * (mo__checkarg: "tensor has been freed" when a finalizer freed it) and, with
 * shape != NULL, raises "fname: the tensor changed from {..} to {..} during the
 * call" unless it still has that shape. Data pointers must be re-read after it. */
mo_tensor *mo__recheck(lua_State *L, int idx, const char *fname, int ndim, const size_t *shape);
/* A number (a real Lua number; numeric strings are refused) at idx, or an error. */
lua_Number mo__checknumber(lua_State *L, int idx, const char *fname);
/* An integer at idx (an integer, or a float with an exact integer value: NaN,
 * infinities, fractions and floats outside lua_Integer's range are refused, never
 * cast), or raises "bad argument #idx to 'fname' (<what> must be an integer, got
 * 2.5)". The one Lua-number-to-integer conversion of the binding. */
lua_Integer mo__checkinteger(lua_State *L, int idx, const char *fname, const char *what);
/* An optional tensor argument: NULL for nil or none, else as mo__checkarg. */
mo_tensor *mo__opttensor(lua_State *L, int idx, const char *fname);
/* An optional number: `def` when the value is nil or absent. */
lua_Number mo__optnumber(lua_State *L, int idx, const char *fname, lua_Number def);
/* A dimension of t at idx: 1..ndim, or -ndim..-1 counting from the end (-1 the last);
 * returns it 0-based; else "bad argument #idx to 'fname' (dimension 3 out of range for a
 * 2-d tensor of shape {2, 3})". */
int mo__checkdim(lua_State *L, int idx, const char *fname, const mo_tensor *t);
/* The same over n positions (unsqueeze's extra one: n = ndim + 1). */
int mo__checkdim_n(lua_State *L, int idx, const char *fname, const mo_tensor *t, int n);

/* Largest size of one dimension and largest element count of a tensor made from Lua. */
#define MO__MAX_SIZE ((lua_Integer)1 << 40)

/*
 * Reads a shape given either as one table {2, 3} at `first` or as the integers
 * first..last (varargs). With infer != NULL one size may be -1: *infer gets
 * its 0-based dimension (else -1) and that size reads 0 until mo__infer_size. Errors read
 * "fname: size #1 must be a non-negative integer, got -1". Returns ndim.
 */
int mo__readshape(lua_State *L, int first, int last, const char *fname, size_t *shape,
                  int *infer);
/* Sets shape[infer] (read as -1) so that the shape holds numel elements, or raises
 * "fname: cannot infer size #k: ...". */
void mo__infer_size(lua_State *L, const char *fname, int ndim, size_t *shape, int infer,
                    size_t numel);
/* Checks that the product of shape fits MO__MAX_SIZE; returns it. */
size_t mo__shape_numel(lua_State *L, const char *fname, int ndim, const size_t *shape);

/* ---- dtypes (docs/design.md "Two dtypes") ---- */

/* Returns 1 when a and b share a dtype, else raises
 * "fname: dtype mismatch: float32 vs float64 (convert one with :double() or :float())". */
int mo__same_dtype(lua_State *L, const char *fname, const mo_tensor *a, const mo_tensor *b);
/* The dtype named by the string at idx ("float32" or "float64"), or an argument error. */
mo_dtype mo__checkdtype(lua_State *L, int idx, const char *fname);
/* Whether the value at idx is an options table: a table with keys but no array part
 * ({} is an empty shape, {2, 3} a shape, {dtype = "float64"} options). */
int mo__is_options(lua_State *L, int idx);
/* Constructors' trailing options: when the argument at *last is an options table,
 * reads its dtype (default float32; unknown keys and dtype names are errors),
 * decrements *last and returns 1; otherwise sets float32 and returns 0. */
int mo__optdtype(lua_State *L, int *last, const char *fname, mo_dtype *dt);

/* ---- making tensors ---- */

/*
 * Pushes a new contiguous tensor of the given shape (zeroed when zero != 0)
 * and returns its handle. Tells the garbage collector about the memory, so a
 * loop making large temporaries does not outrun the collector.
 */
mo_tensor *mo__newtensor(lua_State *L, int ndim, const size_t *shape, int zero, const char *fname);
/* The same with an element type: "a new tensor of src's dtype with this shape" is
 * mo__newtensor_dtype(L, ndim, shape, src->dtype, 0, fname). */
mo_tensor *mo__newtensor_dtype(lua_State *L, int ndim, const size_t *shape, mo_dtype dt, int zero,
                               const char *fname);
/* Reports numel floats of memory made outside Lua's allocator to the collector. */
void mo__gc_account(lua_State *L, size_t numel);
/* alloc.c: this state's tensor allocator for a tensor of about `bytes` bytes (a bounded
 * cache of freed large blocks in front of aligned_alloc; docs/design.md "Memory ownership"),
 * or NULL (the core's default) for small tensors and while the state closes. May allocate
 * (the first call): get it after the last Lua allocation and pass it straight to the core
 * call that makes storage. */
const mo_allocator *mo__allocator(lua_State *L, size_t bytes);
/* Copies user value 2 (what the memory depends on) from the tensor at src to the tensor at dst. */
void mo__copy_owner(lua_State *L, int src, int dst);

/*
 * For in-place operations: when *in shares storage with `out` but is not the
 * very same view, an elementwise kernel could read elements it already wrote,
 * so *in is copied into *tmp first and *in is pointed at *tmp. *tmp is always
 * initialised; release it after the kernel ran (no Lua error in between).
 */
mo_status mo__unalias(mo_tensor *tmp, const mo_tensor *out, const mo_tensor **in);

/* ---- lean optimizer state objects (optim.c; docs/design.md "Lean optimizer state") ---- */

/* The userdata behind a lean state buffer: the core's buffer plus its param's shape. */
typedef struct mo__lean_ud {
    mo_lean s;
    int ndim;
    size_t shape[MO_MAX_DIMS];
} mo__lean_ud;
/* The lean state object at idx, or NULL for anything else (an emptied one has s.codes NULL). */
mo__lean_ud *mo__tolean(lua_State *L, int idx);
/* Pushes a new lean state object of the shape, all 0 (allocates: may run finalizers). */
mo__lean_ud *mo__push_lean(lua_State *L, mo_state_dtype dt, mo_lean_sign sign, int ndim,
                           const size_t *shape, const char *fname);
/* Registers the lean state type and its core functions (optim_lean.c; called by mo__open_optim). */
void mo__open_optim_lean(lua_State *L);

#endif /* MOONOPT_BINDING_H */
