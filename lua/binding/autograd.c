/*
 * autograd.c - the binding's half of autograd (docs/autograd.md, "How the tape works"):
 * per-tensor autograd state, the per-lua_State grad mode, and the dispatcher every
 * tensor function registered through mo__setfuncs / mo__add_methods runs behind.
 *
 * Per tensor (the userdata block is an mo__tblock: the handle plus `ag` flag bits):
 *   MO__AG_REQ     requires grad (a leaf with requires_grad, or a recorded result)
 *   MO__AG_NONLEAF has a grad_fn: user value 3 is its node (a Lua table), user
 *                  value 4 the output index within that node (nil for 1)
 *   MO__AG_MARK    made by a non-differentiable op from tensors needing grad: user
 *                  value 3 is the op's name, so backward can say which op it was
 *
 * Per lua_State (a userdata in the registry, upvalue 3 of every dispatcher):
 *   enabled  grad mode (mo.no_grad turns it off)
 *   live     how many tensors have any flag: while 0, no call needs recording, and
 *            the dispatcher's whole cost is two upvalue reads and a compare.
 *
 * The dispatcher (ag_dispatch) wraps each C function f, calling f itself (not through
 * lua_call, so f keeps the caller's frame: error positions and argument numbers are
 * unchanged). Only when grad mode is on and some argument (or a tensor in a list
 * argument) has a flag, it anchors the arguments, runs f, and hands the Lua
 * recorder (lua/moonopt/autograd/engine.lua, installed with core._autograd.install) the op's
 * name, the arguments and the results; the recorder attaches a node to the results.
 * In-place functions (a name ending in "_", set, fill, copy, t[k] = v) are never
 * recorded: under grad mode they raise when self has a grad_fn, or when another argument
 * has one and self is not a leaf needing grad (writing into a parameter is an update;
 * a leaf source is read as a constant); afterwards they bump self's storage version. optim_step bumps every
 * parameter's version. Factories apply a {requires_grad = true} option.
 */
#include "binding.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

/* Recorded calls can nest (a finalizer run by an allocation inside f records its own op),
 * and a call an error ended leaves its frame until a later call drops it (push_frame). The
 * frames held are at distinct C stack depths, so fewer than Lua's limit of nested C calls
 * (LUAI_MAXCCALLS, 200): this bound is not reached; a call past it is refused. */
enum { FRAMES_MAX = 256 };

/* A recorded call in progress (see "The recording path" below). */
typedef struct ag_frame {
    lua_Integer serial; /* numbers the call */
    uintptr_t sp;       /* the address of the recording C function's frame */
    int base;           /* the call's arguments are anchors[base + 1 .. base + top] */
    int top;
} ag_frame;

typedef struct ag_state {
    int enabled;        /* grad mode */
    int recorder;       /* a recorder is installed (the registry's recorder_key) */
    int down;           /* the C stack grows toward lower addresses */
    int depth;          /* frames in use, innermost last */
    size_t live;        /* tensors with ag != 0 */
    lua_Integer serial; /* numbers the recorded calls */
    ag_frame frames[FRAMES_MAX];
} ag_state;

/* Registry keys (their addresses are the keys; never written). */
static const char state_key = 's';    /* the ag_state userdata */
static const char recorder_key = 'r'; /* the Lua recorder function (absent: no recording) */
static const char fast_key = 'c';     /* engine.FAST: name -> def.fast (core._autograd.fast()) */
static const char anchors_key = 'a';  /* the arguments of the recorded calls in progress */
static const char names_key = 'f';    /* every name mo__ag_setfuncs registered -> its kind */

/* The registry tables of the recording path: a dispatcher, and t[k] / t[k] = v
 * (mo__ag_call_uv), hold them as upvalues 6 and 7 (a pseudo-index read is much cheaper than
 * a registry look-up per op: light-userdata keys take the registry's generic look-up,
 * about 100 instructions each); upv = 0 reads them from the registry. */
/* UV_MAXARGS: ag_dispatch's closures have one upvalue more than mo__ag_push_upvalues
 * pushes, the function's most arguments (mo__max_args; -1: not checked). */
enum { UV_ANCHORS = 6, UV_FAST = MO__AG_NUPVALUES, UV_MAXARGS = MO__AG_NUPVALUES + 1 };

static void push_table(lua_State *L, int upv, int uv, const char *key)
{
    if (upv)
        lua_pushvalue(L, lua_upvalueindex(uv));
    else
        lua_rawgetp(L, LUA_REGISTRYINDEX, key);
}
#define push_anchors(L, upv) push_table(L, upv, UV_ANCHORS, &anchors_key)
#define push_fast(L, upv) push_table(L, upv, UV_FAST, &fast_key)

/* Function kinds, from the registered name (upvalue 4 of a dispatcher). */
enum { F_INPLACE = MO__AG_INPLACE, F_FACTORY = 2, F_STEP = 4, F_PLAIN = 8 };

/* The A_GROUPS argument of optim_step (lua/binding/optim.c): a list of {params = {...}}. */
#define STEP_GROUPS_ARG 3

static ag_state *get_state(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &state_key);
    ag_state *s = (ag_state *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    return s; /* the registry pins it */
}

/* The address of the calling function's C frame (of a local where the compiler has no
 * builtin for it). Only compared with another such address: see push_frame. */
#if defined(__GNUC__) || defined(__clang__)
#define FRAME_ADDR() ((uintptr_t)__builtin_frame_address(0))
#else
#define FRAME_ADDR() ((uintptr_t)(void *)&frame_mark)
#define FRAME_MARK char frame_mark = 0
#endif
#ifndef FRAME_MARK
#define FRAME_MARK (void)0
#endif

static uintptr_t callee_frame(void)
{
    FRAME_MARK;
    return FRAME_ADDR();
}

/* Called through a volatile pointer, so that it cannot be inlined: its frame is a callee's. */
static uintptr_t (*volatile callee_frame_fn)(void) = callee_frame;

static int stack_grows_down(void)
{
    FRAME_MARK;
    return callee_frame_fn() < FRAME_ADDR();
}

void mo__ag_open(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &state_key) != LUA_TUSERDATA) {
        lua_pop(L, 1);
        ag_state *s = (ag_state *)lua_newuserdatauv(L, sizeof *s, 0);
        s->enabled = 1;
        s->recorder = 0;
        s->down = stack_grows_down();
        s->depth = 0;
        s->live = 0;
        s->serial = 0;
        lua_newtable(L); /* engine.FAST: made here so dispatchers hold it as an upvalue */
        lua_rawsetp(L, LUA_REGISTRYINDEX, &fast_key);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &state_key);
        lua_createtable(L, 64, 0);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &anchors_key);
    } else {
        lua_pop(L, 1);
    }
}

void mo__ag_push_state(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &state_key);
}

/* ---- flags ---- */

/* The block of a tensor userdata (the handle comes first, so the cast is exact). */
static mo__tblock *block_of(mo_tensor *t) { return (mo__tblock *)(void *)t; }

unsigned mo__ag_flags(const mo_tensor *t) { return ((const mo__tblock *)(const void *)t)->ag; }

/* The tensor at idx or NULL. upv: the running C function has the tensor metatable as
 * upvalue 1 (dispatchers and core._autograd's functions do; t[k] and t[k] = v do not), so
 * mo__toarg's test applies, a pointer compare instead of a registry look-up by name. */
static mo_tensor *tensor_at(lua_State *L, int idx, int upv)
{
    return upv ? mo__toarg(L, idx) : mo__totensor(L, idx);
}

/* Sets the flags of the tensor at idx (its user values are the caller's business),
 * keeping the live count. */
static void set_flags(ag_state *s, mo_tensor *t, unsigned flags)
{
    mo__tblock *b = block_of(t);
    if (b->ag == 0 && flags != 0) s->live++;
    if (b->ag != 0 && flags == 0 && s->live > 0) s->live--;
    b->ag = flags;
}

void mo__ag_forget(lua_State *L, mo_tensor *t)
{
    if (block_of(t)->ag == 0) return;
    ag_state *s = get_state(L);
    if (s != NULL) set_flags(s, t, 0);
    else block_of(t)->ag = 0;
}

/* The flags of the value at idx when it is a tensor (freed or not), else 0. upv: the
 * running C function has the tensor metatable as upvalue 1 (dispatched functions do;
 * t[k] and t[k] = v do not), so mo__toarg's fast test applies. */
static unsigned arg_flags(lua_State *L, int idx, int upv)
{
    mo_tensor *t = tensor_at(L, idx, upv);
    return t ? block_of(t)->ag : 0;
}

/* The union of the flags of the tensors in the list at idx (its array part). */
static unsigned list_flags(lua_State *L, int idx, int upv)
{
    unsigned f = 0;
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i); /* no allocation: a plain read */
        f |= arg_flags(L, -1, upv);
        lua_pop(L, 1);
    }
    return f;
}

/* ---- in-place functions ---- */

/* The suggestion of an in-place error: add_ -> " add"; set, copy, __newindex -> the
 * out-of-place tools. Built only when raising (inplace_check runs on every in-place call
 * while some tensor has autograd state: optimizers' fill_ and zero_ among them). */
static const char *inplace_alt(char *alt, size_t cap, const char *name)
{
    size_t len = strlen(name);
    if (len > 1 && len < cap - 1 && name[len - 1] == '_' && name[0] != '_') {
        alt[0] = ' ';
        memcpy(alt + 1, name, len - 1);
        alt[len] = '\0';
        return alt;
    }
    return " (mo.where, mo.cat, ...)";
}

/* Raises when an in-place call must not run under grad mode (see the file comment). */
static void inplace_check(lua_State *L, int top, const char *name, int upv)
{
    char alt[64];
    unsigned self = arg_flags(L, 1, upv);
    /* a leaf needing grad is a parameter: writing into it is an update (an optimizer
     * restoring a backup it cloned), whatever the source */
    if ((self & (MO__AG_REQ | MO__AG_NONLEAF)) == MO__AG_REQ) return;
    if (self & MO__AG_NONLEAF)
        luaL_error(L, "%s: in-place operations are not recorded by autograd, and self was made "
                   "by a recorded op (it has a grad_fn); use the out-of-place form%s (or run "
                   "it under mo.no_grad)", name, inplace_alt(alt, sizeof alt, name));
    for (int i = 2; i <= top; i++) {
        unsigned f = lua_istable(L, i) ? list_flags(L, i, upv) : arg_flags(L, i, upv);
        if (f & MO__AG_NONLEAF)
            luaL_error(L, "%s: argument #%d was made by a recorded op (it has a grad_fn), but "
                       "in-place operations are not recorded by autograd; use the out-of-place "
                       "form%s", name, i - 1, inplace_alt(alt, sizeof alt, name));
    }
}

static void bump_arg(lua_State *L, int idx, int upv)
{
    mo_tensor *t = tensor_at(L, idx, upv);
    if (t != NULL) mo_tensor_bump_version(t);
}

/* After optim_step: every parameter of every group was (possibly) written. */
static void bump_params(lua_State *L)
{
    if (!lua_istable(L, STEP_GROUPS_ARG)) return;
    lua_Integer ng = (lua_Integer)lua_rawlen(L, STEP_GROUPS_ARG);
    for (lua_Integer g = 1; g <= ng; g++) {
        if (lua_rawgeti(L, STEP_GROUPS_ARG, g) == LUA_TTABLE) {
            lua_pushliteral(L, "params");
            if (lua_rawget(L, -2) == LUA_TTABLE) {
                lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
                for (lua_Integer i = 1; i <= n; i++) {
                    lua_rawgeti(L, -1, i);
                    bump_arg(L, -1, 1);
                    lua_pop(L, 1);
                }
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
}

/* ---- recording ---- */

/* Whether a factory's trailing options ask for requires_grad (mo__optdtype checks the
 * value's type when f runs). */
static int wants_grad(lua_State *L, int top)
{
    if (top < 1 || !lua_istable(L, top)) return 0;
    lua_pushliteral(L, "requires_grad");
    int want = lua_rawget(L, top) == LUA_TBOOLEAN && lua_toboolean(L, -1);
    lua_pop(L, 1);
    return want;
}

/* Raises the recorder's error (at the top) as this call's: a message naming the op
 * passes (E.fail put the user's position there); another one (an argument a finalizer
 * freed while the node was built) gets the op's name, without the library position. */
static void record_error(lua_State *L, const char *name)
{
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL) lua_error(L);
    if (strstr(msg, name) != NULL) lua_error(L);
    const char *pos = strstr(msg, ".lua:");
    if (pos != NULL) {
        const char *rest = strstr(pos, ": ");
        if (rest != NULL) msg = rest + 2;
    }
    luaL_error(L, "%s: %s", name, msg);
}

/* Pushes the edge of the tensor at idx (its node and output index, the leaf itself and
 * 0, or false and 0). */
static void push_edge(lua_State *L, int idx, const mo_tensor *t)
{
    unsigned fl = t ? mo__ag_flags(t) : 0;
    if (fl & MO__AG_NONLEAF) {
        lua_getiuservalue(L, idx, 3);
        if (lua_getiuservalue(L, idx, 4) == LUA_TNIL) {
            lua_pop(L, 1);
            lua_pushinteger(L, 1);
        }
    } else if (fl & MO__AG_REQ) {
        lua_pushvalue(L, idx);
        lua_pushinteger(L, 0);
    } else {
        lua_pushboolean(L, 0);
        lua_pushinteger(L, 0);
    }
}

/* A list of at most PACKED_MAX argument positions (0 to 31) packed into one integer, as
 * engine.lua's `pack` makes them for def.fast: the count in bits 0-3, position k in the 5
 * bits from 4 + 5 (k - 1). The fast path reads them without a table look-up each. */
enum { PACKED_MAX = 11 };
static int packed_count(lua_Unsigned v) { return (int)(v & 15u); }
static int packed_at(lua_Unsigned v, int k)
{
    int shift = 4 + 5 * (k - 1); /* past the integer's width (a 32-bit Lua): no position */
    return shift < (int)(sizeof v * CHAR_BIT) ? (int)((v >> shift) & 31u) : 0;
}

/* node[2k-1], node[2k] = the edge of differentiable input k (argument position k of the
 * packed list `ins`; the arguments are at stack indices a0, a0 + 1, ...), for k = 1..nin. */
static void fill_edges(lua_State *L, int node, lua_Unsigned ins, int nin, int a0, unsigned req,
                       mo_tensor *const *at)
{
    for (int k = 1; k <= nin; k++) {
        int p = packed_at(ins, k);
        if (p >= 1 && p <= 30 && (req & (1u << (p - 1))) != 0) { /* so p <= the call's top */
            push_edge(L, a0 + (int)p - 1, at[p]);
        } else {
            lua_pushboolean(L, 0);
            lua_pushinteger(L, 0);
        }
        lua_rawseti(L, node, 2 * k);
        lua_rawseti(L, node, 2 * k - 1);
    }
}

/* Pushes the shape key of tensor t: its sizes as one Lua string, the bytes of their
 * lua_Integer values in order. What a node saves of a shape: a string of up to 40 bytes
 * (5 dims) is interned, so the key of a shape seen before allocates nothing (a table of
 * sizes was two allocations and a collectable object per recorded op, which cost more
 * time than their instruction counts tell). core._autograd.sizes(key) gives the table. */
static void push_shape_key(lua_State *L, const mo_tensor *t)
{
    lua_Integer v[MO_MAX_DIMS];
    int nd = t->ndim;
    for (int d = 0; d < nd; d++) v[d] = (lua_Integer)t->shape[d];
    lua_pushlstring(L, (const char *)v, (size_t)nd * sizeof v[0]);
}

/* Pushes the shape key of tensor t when its sizes differ from those of o (NULL: always),
 * else false; nil for a non-tensor t (NULL: a number operand). */
static void push_bshape(lua_State *L, const mo_tensor *t, const mo_tensor *o)
{
    if (t == NULL)
        lua_pushnil(L);
    else if (o != NULL && mo_tensor_same_shape(t, o))
        lua_pushboolean(L, 0);
    else
        push_shape_key(L, t);
}

/* Whether a declared `dims` save sets node.dim and node.keepdim: a reduction given a dim. */
static int saves_dims(lua_State *L, int a0, int top, mo_tensor *const *at)
{
    return top >= 2 && lua_type(L, a0 + 1) == LUA_TNUMBER && at[1] != NULL;
}

/*
 * A definition's declarative save (engine.defop's `saves`, `shapes`, `shape`), done here
 * instead of calling a Lua `save`: the hot path of recording. def.fast[3] is one integer:
 * flags in bits 0-3 (1: shapes, 2: shape, 4: arg2, 8: dims), then from bit 4 the packed
 * list `saves` of the positions of the values to save (0: the result).
 *   saves   node[base + k] = value k, node[base + n + k] = its storage version (false
 *           for a non-tensor), base = 2 nin: after the edges, as engine.save (node.nsaved
 *           = n comes from the node's metatable)
 *   shapes  node.sa, node.sb = the shape keys of arguments 1 and 2 when broadcasting
 *           changed them (left nil otherwise: backward reads nil as "the result's shape")
 *   shape   node.shape = the shape key of argument 1
 *   arg2    node.arg2 = argument 2 as it is (a number: t[i]'s index), no version
 *   dims    a reduction's node.dim (argument 2 when a number, counted from 1: f accepted
 *           it, so it is an integer in range) and node.keepdim (argument 3 is true)
 * engine.lua's make_save is the same in Lua (the recorder's slow path runs it).
 */
static void c_save(lua_State *L, int node, int base, unsigned flags, lua_Unsigned saves,
                   int a0, int top, int out, mo_tensor *const *at)
{
    int n = packed_count(saves);
    if (n > 0) {
        for (int k = 1; k <= n; k++) {
            int p = packed_at(saves, k);
            if (p == 0)
                lua_pushvalue(L, out);
            else if (p <= top)
                lua_pushvalue(L, a0 + p - 1);
            else
                lua_pushnil(L);
            const mo_tensor *t = p <= 30 ? at[p] : NULL;
            if (t != NULL)
                lua_pushinteger(L, (lua_Integer)mo_tensor_version(t));
            else
                lua_pushboolean(L, 0);
            lua_rawseti(L, node, base + n + k); /* presized by fast_record: no allocation */
            lua_rawseti(L, node, base + k);
        }
    }
    if (flags & 1) {
        for (int i = 1; i <= 2; i++) {
            push_bshape(L, at[i], at[0]);
            if (lua_type(L, -1) == LUA_TSTRING) /* a key: the shapes differ */
                lua_setfield(L, node, i == 1 ? "sa" : "sb");
            else
                lua_pop(L, 1);
        }
    }
    if (flags & 2) {
        push_bshape(L, at[1], NULL); /* no result to compare with: the key */
        lua_setfield(L, node, "shape");
    }
    if (flags & 4) {
        if (top >= 2)
            lua_pushvalue(L, a0 + 1);
        else
            lua_pushnil(L);
        lua_setfield(L, node, "arg2");
    }
    if ((flags & 8) && saves_dims(L, a0, top, at)) {
        lua_Integer d = lua_tointeger(L, a0 + 1);
        lua_pushinteger(L, d < 0 ? d + (lua_Integer)at[1]->ndim + 1 : d);
        lua_setfield(L, node, "dim");
        int keep = top >= 3 && lua_type(L, a0 + 2) == LUA_TBOOLEAN && lua_toboolean(L, a0 + 2);
        lua_pushboolean(L, keep);
        lua_setfield(L, node, "keepdim");
    }
}

/* How many named fields c_save sets on a node for a declared save's flags (at: as c_save's):
 * the node's hash part is made for exactly these. */
static int save_fields(lua_State *L, unsigned flags, int a0, int top, mo_tensor *const *at)
{
    int n = 0;
    if (flags & 1)
        for (int i = 1; i <= 2; i++) n += at[i] != NULL && !mo_tensor_same_shape(at[i], at[0]);
    if (flags & 2) n++;
    if (flags & 4) n++;
    if ((flags & 8) && saves_dims(L, a0, top, at)) n += 2;
    return n;
}

/* Pushes a new table of the arguments at stack indices a0 .. a0 + top - 1 (what the Lua
 * recorder and a definition's Lua `save` take). */
static void push_args_table(lua_State *L, int a0, int top)
{
    lua_createtable(L, top, 0);
    for (int i = 1; i <= top; i++) {
        lua_pushvalue(L, a0 + i - 1);
        lua_rawseti(L, -2, i); /* presized: no allocation */
    }
}

/*
 * The recorder's generic case done here (engine.lua's record_generic makes the same node):
 * a definition with `inputs` and no `record` of its own (engine.defop gives it `fast` =
 * {the nodes' metatable, inputs, the declarative save spec or false, save or false}), one
 * tensor result that is not one of the arguments. The node gets its edges, the metatable
 * (name, backward, nin, and nsaved of a declarative save, shared by every node of the op:
 * four fewer fields to insert per node) and what the save stores; then it is attached to
 * the result. The call's arguments are at stack indices a0 .. a0 + top - 1. Returns 0
 * (nothing done) for every other case, which the Lua recorder takes. The stack is left
 * with extra values; the caller resets it.
 */
static int fast_record(lua_State *L, ag_state *s, const char *name, int nameidx, int a0,
                       int top, unsigned req, int last, int upv, mo_tensor **at)
{
    mo_tensor *out = tensor_at(L, last, upv);
    if (out == NULL) return 0;
    at[0] = out;
    for (int i = 1; i <= top && i <= 30; i++)
        if (at[i] == out) return 0; /* `to` or `contiguous` returning self: nothing to record */
    if (top > 30) return 0;        /* (arguments past 30 were not scanned: the Lua recorder) */
    push_fast(L, upv);
    if (nameidx != 0)
        lua_pushvalue(L, nameidx);
    else
        lua_pushstring(L, name);
    if (lua_rawget(L, -2) != LUA_TTABLE) return 0;
    int fast = lua_gettop(L);
    lua_rawgeti(L, fast, 1); /* fast + 1: the metatable */
    lua_rawgeti(L, fast, 2); /* fast + 2: the input positions, packed */
    lua_rawgeti(L, fast, 3); /* fast + 3: the declarative save, packed, or false */
    lua_rawgeti(L, fast, 4); /* fast + 4: save or false */
    if (!lua_istable(L, fast + 1) || !lua_isinteger(L, fast + 2)) return 0;
    lua_Unsigned ins = (lua_Unsigned)lua_tointeger(L, fast + 2);
    int nin = packed_count(ins);
    if (nin < 1 || nin > PACKED_MAX) return 0;

    /* the node: its edges, then the saved values and their versions (a declared save's
     * count, or room for a Lua save's first three); its hash part sized for the fields a
     * declared save sets (none for most ops: one allocation less), or two for a Lua save */
    unsigned flags = 0;
    lua_Unsigned saves = 0;
    int nsave = 3, nrec = 2;
    const int declared = lua_isinteger(L, fast + 3);
    if (declared) {
        lua_Unsigned c = (lua_Unsigned)lua_tointeger(L, fast + 3);
        flags = (unsigned)(c & 15u);
        saves = c >> 4;
        nsave = packed_count(saves);
        nrec = save_fields(L, flags, a0, top, at);
    }
    if (nsave > PACKED_MAX) return 0;
    lua_createtable(L, 2 * nin + 2 * nsave, nrec);
    int node = lua_gettop(L);
    fill_edges(L, node, ins, nin, a0, req, at);
    lua_pushvalue(L, fast + 1);
    lua_setmetatable(L, node);
    if (declared) {
        c_save(L, node, 2 * nin, flags, saves, a0, top, last, at);
    } else if (lua_isfunction(L, fast + 4)) {
        lua_pushvalue(L, fast + 4);
        lua_pushvalue(L, node);
        push_args_table(L, a0, top);
        lua_pushinteger(L, top);
        lua_pushvalue(L, last);
        if (lua_pcall(L, 4, 0, 0) != LUA_OK) record_error(L, name);
    }
    /* the result is output 1 of the node (as _autograd.set_node) */
    lua_pushvalue(L, node);
    lua_setiuservalue(L, last, 3);
    lua_pushnil(L);
    lua_setiuservalue(L, last, 4);
    set_flags(s, out, MO__AG_REQ | MO__AG_NONLEAF);
    return 1;
}

/*
 * The recording path. f runs with the stack exactly as the caller left it (it counts its
 * arguments with lua_gettop, and may overwrite them: conv replaces a strided input by a
 * contiguous copy), so the arguments wait in the anchors table (a registry table, a
 * dispatcher's upvalue) while f runs: the recorder needs the originals, and they may have
 * no other reference. Calls in progress form a stack of frames, innermost last, each
 * owning a run of the table's slots; recorded calls nest when a finalizer run by an
 * allocation inside f records an op of its own.
 *
 * An error in f leaves its frame behind (the error unwinds past this code). Such a frame
 * is recognized by its C stack address: a call in progress is a caller of every call
 * that starts later, so its C frame lies farther from the stack's growth than the new
 * call's, while an ended call's frame lies at the new call's depth or past it. push_frame
 * drops every innermost frame that is not such a caller (a frame kept by that test is at
 * worst dropped by a later call), and pop_frame drops frames an error left above its own
 * (a nested call that failed inside f, its error caught by the finalizer's protected
 * call). The slots are cleared when a frame goes, so nothing stays pinned. (A host that
 * runs one lua_State from several OS threads in turn compares addresses of different
 * stacks: a frame in progress is still always on the current thread's, so the test stays
 * right, and an ended frame from another thread's stack may only wait longer.)
 */

/* Drops the innermost frame, clearing its slots of the anchors table at `anchors`. */
static void drop_frame(lua_State *L, ag_state *s, int anchors)
{
    const ag_frame *fr = &s->frames[--s->depth];
    for (int i = 1; i <= fr->top; i++) {
        lua_pushnil(L);
        lua_rawseti(L, anchors, fr->base + i);
    }
}

/* Whether frame fr is a call still in progress, seen from a call whose frame is `here`. */
static int frame_running(const ag_state *s, const ag_frame *fr, uintptr_t here)
{
    return s->down ? fr->sp > here : fr->sp < here;
}

/* Before f: anchors arguments 1..top in a new innermost frame; the stack is left as it
 * was. Returns the frame's serial. */
static lua_Integer push_frame(lua_State *L, ag_state *s, int top, uintptr_t here,
                              const char *name, int upv)
{
    push_anchors(L, upv);
    int anchors = lua_gettop(L);
    while (s->depth > 0 && !frame_running(s, &s->frames[s->depth - 1], here))
        drop_frame(L, s, anchors);
    if (s->depth == FRAMES_MAX)
        luaL_error(L, "%s: more than %d recorded calls nested (autograd)", name, FRAMES_MAX);
    ag_frame *fr = &s->frames[s->depth];
    fr->serial = ++s->serial;
    fr->sp = here;
    fr->base = s->depth > 0 ? fr[-1].base + fr[-1].top : 0;
    fr->top = top;
    s->depth++; /* before the writes: a call nested in them (a finalizer) stacks above */
    for (int i = 1; i <= top; i++) {
        lua_pushvalue(L, i);
        lua_rawseti(L, anchors, fr->base + i);
    }
    lua_settop(L, top);
    return fr->serial;
}

/* After f: pushes the arguments of the frame numbered `serial` (dropping frames that
 * errors left above it), drops that frame, and returns the stack index of argument 1. */
static int pop_frame(lua_State *L, ag_state *s, lua_Integer serial, const char *name, int upv)
{
    push_anchors(L, upv);
    int anchors = lua_gettop(L);
    while (s->depth > 0 && s->frames[s->depth - 1].serial != serial) drop_frame(L, s, anchors);
    if (s->depth == 0) return luaL_error(L, "%s: autograd lost the arguments of this call", name);
    const ag_frame *fr = &s->frames[s->depth - 1];
    luaL_checkstack(L, fr->top + 8, name);
    int a0 = lua_gettop(L) + 1;
    for (int i = 1; i <= fr->top; i++) lua_rawgeti(L, anchors, fr->base + i);
    drop_frame(L, s, anchors);
    return a0;
}

static int record_call(lua_State *L, ag_state *s, lua_CFunction f, const char *name, int nameidx,
                       int top, unsigned req, unsigned mark, int upv, mo_tensor **at)
{
    FRAME_MARK;
    lua_Integer serial = push_frame(L, s, top, FRAME_ADDR(), name, upv);
    int n = f(L);
    int last = lua_gettop(L);
    int a0 = pop_frame(L, s, serial, name, upv);

    /* the C fast path first: it needs no recorder function (the flag says one is there) */
    if (!s->recorder ||
        (n == 1 && req != 0 && fast_record(L, s, name, nameidx, a0, top, req, last, upv, at))) {
        lua_settop(L, last);
        return n;
    }
    lua_settop(L, a0 + top - 1); /* what fast_record left goes */
    luaL_checkstack(L, n + 8, name);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &recorder_key) != LUA_TFUNCTION) {
        lua_settop(L, last);
        return n;
    }
    if (nameidx != 0)
        lua_pushvalue(L, nameidx); /* the dispatcher's name upvalue: no string interning */
    else
        lua_pushstring(L, name);
    push_args_table(L, a0, top);
    lua_pushinteger(L, top);
    lua_pushinteger(L, (lua_Integer)req);
    lua_pushinteger(L, (lua_Integer)mark);
    for (int i = last - n + 1; i <= last; i++) lua_pushvalue(L, i);
    if (lua_pcall(L, 5 + n, 0, 0) != LUA_OK) record_error(L, name);
    lua_settop(L, last);
    return n;
}

static int ag_call(lua_State *L, ag_state *s, lua_CFunction f, const char *name, int nameidx,
                   int kind, int upv);

/* ag_call from a C function with a dispatcher's upvalues (t[k] and t[k] = v, tensor.c):
 * the state and the tables are upvalues, not registry look-ups. */
int mo__ag_call_uv(lua_State *L, lua_CFunction f, int nameidx, int kind)
{
    ag_state *s = (ag_state *)lua_touserdata(L, lua_upvalueindex(3));
    return ag_call(L, s, f, lua_tostring(L, nameidx), nameidx, kind, 1);
}

/* s: the lua_State's ag_state (a dispatcher's upvalue 3: no registry look-up per call). */
static int ag_call(lua_State *L, ag_state *s, lua_CFunction f, const char *name, int nameidx,
                   int kind, int upv)
{
    int top = lua_gettop(L);
    int recording = s != NULL && s->enabled && s->live > 0;
    if (kind & F_INPLACE) {
        if (recording) inplace_check(L, top, name, upv);
        int n = f(L);
        bump_arg(L, 1, upv);
        return n;
    }
    if (kind & F_FACTORY) {
        int want = wants_grad(L, top);
        int n = f(L);
        mo_tensor *t = n == 1 ? tensor_at(L, -1, upv) : NULL;
        if (want && t != NULL && s != NULL) set_flags(s, t, block_of(t)->ag | MO__AG_REQ);
        return n;
    }
    if (kind & F_STEP) {
        int n = f(L);
        bump_params(L);
        return n;
    }
    if (!recording) return f(L);
    /* at[i]: argument i's tensor (NULL for another value), found once here and used by the
     * record after f ran: the call's frame of anchors (push_frame) holds these userdata blocks, so
     * the pointers stay valid memory (a finalizer may release a tensor's contents in
     * between, which leaves an empty tensor: versions and shapes read then are harmless,
     * and backward reports the freed tensor); at[0] is the result */
    mo_tensor *at[32] = {NULL};
    unsigned req = 0, mark = 0;
    for (int i = 1; i <= top && i <= 30; i++) {
        unsigned fl;
        if (lua_type(L, i) == LUA_TTABLE) {
            fl = list_flags(L, i, upv);
        } else {
            at[i] = tensor_at(L, i, upv);
            fl = at[i] ? block_of(at[i])->ag : 0;
        }
        if (fl & MO__AG_REQ) req |= 1u << (i - 1);
        if (fl & MO__AG_MARK) mark |= 1u << (i - 1);
    }
    if (req == 0 && mark == 0) return f(L);
    return record_call(L, s, f, name, nameidx, top, req, mark, upv, at);
}

/* The wrapper of every dispatched function. Upvalues: 1 the tensor metatable (for
 * mo__toarg), 2 f, 3 the ag_state, 4 the kind, 5 the name, 6 and 7 the anchors table and
 * engine.FAST (UV_ANCHORS, UV_FAST). */
static int ag_dispatch(lua_State *L)
{
    const lua_Integer max = lua_tointeger(L, lua_upvalueindex(UV_MAXARGS));
    if (max >= 0 && lua_gettop(L) > max)
        mo__check_arity(L, (int)max, lua_tostring(L, lua_upvalueindex(MO__AG_UV_NAME)));
    lua_CFunction f = lua_tocfunction(L, lua_upvalueindex(2));
    ag_state *s = (ag_state *)lua_touserdata(L, lua_upvalueindex(3));
    lua_Integer kind = lua_tointeger(L, lua_upvalueindex(4));
    if (kind == 0 && (s->live == 0 || !s->enabled)) return f(L);
    const int name = lua_upvalueindex(MO__AG_UV_NAME);
    return ag_call(L, s, f, lua_tostring(L, name), name, (int)kind, 1);
}

/* Functions whose results are never tensors made from their arguments (numbers, tables
 * of sizes, strings): registered without the dispatcher, nothing to record. */
static const char *const plain_names[] = {
    "shape", "size", "stride", "numel", "dim", "is_contiguous", "same_storage", "get", "item",
    "totable", "any", "all", "norm_many", "is_tensor", "__gc", "__close", "__len",
    "__tostring", "blas_set_threads", "blas_get_threads", "manual_seed", "clock", NULL};

static int kind_of(const char *name)
{
    for (int i = 0; plain_names[i]; i++)
        if (strcmp(name, plain_names[i]) == 0) return F_PLAIN;
    static const char *const inplace[] = {"set", "fill", "copy", NULL};
    static const char *const factory[] = {"tensor", "zeros", "ones", "full", "empty", "rand",
                                          "randn", "arange", "linspace", "eye", "zeros_like",
                                          "ones_like", "rand_like", "randn_like", "randint", NULL};
    size_t len = strlen(name);
    if (len > 1 && name[len - 1] == '_' && name[0] != '_') return F_INPLACE;
    for (int i = 0; inplace[i]; i++)
        if (strcmp(name, inplace[i]) == 0) return F_INPLACE;
    for (int i = 0; factory[i]; i++)
        if (strcmp(name, factory[i]) == 0) return F_FACTORY;
    if (strcmp(name, "optim_step") == 0) return F_STEP;
    return 0;
}

void mo__ag_push_upvalues(lua_State *L, int mt, lua_CFunction f, int kind, const char *name)
{
    lua_pushvalue(L, mt);
    lua_pushcfunction(L, f);
    mo__ag_push_state(L);
    lua_pushinteger(L, kind);
    lua_pushstring(L, name);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &anchors_key);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &fast_key);
}

/* A function without the dispatcher whose argument count is checked: upvalues 1 the
 * tensor metatable (f reads it as its own upvalue 1: f runs in this closure's frame),
 * 2 f, 3 its most arguments, 4 its name. */
static int plain_checked(lua_State *L)
{
    const int max = (int)lua_tointeger(L, lua_upvalueindex(3));
    if (lua_gettop(L) > max) mo__check_arity(L, max, lua_tostring(L, lua_upvalueindex(4)));
    return lua_tocfunction(L, lua_upvalueindex(2))(L);
}

void mo__ag_setfuncs(lua_State *L, const luaL_Reg *l)
{
    /* stack: ..., target table, metatable */
    int mt = lua_gettop(L);
    /* the names registered here, with their kinds (core._autograd.registered: the test
     * that every dispatched function is defined, non-differentiable or listed) */
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &names_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &names_key);
    }
    int names = lua_gettop(L);
    for (; l->name != NULL; l++) {
        int kind = l->func ? kind_of(l->name) : 0;
        if (l->func != NULL) {
            lua_pushinteger(L, kind);
            lua_setfield(L, names, l->name);
        }
        const int max = l->func ? mo__max_args(l->name) : -1;
        if (l->func == NULL) {
            lua_pushboolean(L, 0);
        } else if (kind == F_PLAIN && max < 0) {
            lua_pushvalue(L, mt);
            lua_pushcclosure(L, l->func, 1);
        } else if (kind == F_PLAIN) {
            lua_pushvalue(L, mt);
            lua_pushcfunction(L, l->func);
            lua_pushinteger(L, max);
            lua_pushstring(L, l->name);
            lua_pushcclosure(L, plain_checked, 4);
        } else {
            mo__ag_push_upvalues(L, mt, l->func, kind, l->name);
            lua_pushinteger(L, max);
            lua_pushcclosure(L, ag_dispatch, UV_MAXARGS);
        }
        lua_setfield(L, mt - 1, l->name);
    }
    lua_pop(L, 1);
}

/* ======================================================================== */
/* Functions for the Lua half (moonopt.core._autograd; docs/autograd.md)     */
/* ======================================================================== */

/* (the functions below have the tensor metatable as upvalue 1: tensor_at(L, idx, 1)) */
static mo_tensor *check_any(lua_State *L, int idx, const char *fname)
{
    mo_tensor *t = tensor_at(L, idx, 1);
    if (t == NULL) mo__typeerror(L, idx, fname, MO_TENSOR_MT);
    return t;
}

/* install(recorder | nil): the Lua recorder */
static int f_install(lua_State *L)
{
    if (!lua_isnil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    get_state(L)->recorder = !lua_isnil(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &recorder_key);
    return 0;
}

/* fast() -> the table engine.FAST is (name -> the definition's `fast`): made with the
 * lua_State's autograd state, so every dispatcher holds it (the C fast path reads it per
 * record: one look-up by the name, the dispatcher's upvalue). */
static int f_fast(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &fast_key);
    return 1;
}

/* grad_mode([flag]) -> the mode before the call; sets it when flag is given. */
static int f_grad_mode(lua_State *L)
{
    ag_state *s = get_state(L);
    lua_pushboolean(L, s->enabled);
    if (!lua_isnone(L, 1)) {
        luaL_checktype(L, 1, LUA_TBOOLEAN);
        s->enabled = lua_toboolean(L, 1);
    }
    return 1;
}

/* info(t) -> requires_grad, node|nil, output index, mark|nil */
static int f_info(lua_State *L)
{
    mo_tensor *t = check_any(L, 1, "info");
    unsigned fl = block_of(t)->ag;
    lua_pushboolean(L, (fl & MO__AG_REQ) != 0);
    if (fl & MO__AG_NONLEAF) {
        lua_getiuservalue(L, 1, 3);
        if (lua_getiuservalue(L, 1, 4) == LUA_TNIL) {
            lua_pop(L, 1);
            lua_pushinteger(L, 1);
        }
    } else {
        lua_pushnil(L);
        lua_pushnil(L);
    }
    if (fl & MO__AG_MARK)
        lua_getiuservalue(L, 1, 3);
    else
        lua_pushnil(L);
    return 4;
}

/* edge(t) -> where a gradient for t goes: its node and output index, t itself for a
 * leaf requiring grad, or nothing. The recorder's per-input call. */
static int f_edge(lua_State *L)
{
    mo_tensor *t = tensor_at(L, 1, 1);
    unsigned fl = t ? block_of(t)->ag : 0;
    if (fl & MO__AG_NONLEAF) {
        lua_getiuservalue(L, 1, 3);
        if (lua_getiuservalue(L, 1, 4) == LUA_TNIL) {
            lua_pop(L, 1);
            lua_pushinteger(L, 1);
        }
        return 2;
    }
    if (fl & MO__AG_REQ) {
        lua_settop(L, 1);
        lua_pushinteger(L, 0);
        return 2;
    }
    return 0;
}

/* set_node(t, node, index): t becomes output `index` of node (a recorded result). */
static int f_set_node(lua_State *L)
{
    mo_tensor *t = check_any(L, 1, "set_node");
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer k = luaL_optinteger(L, 3, 1);
    lua_settop(L, 2);
    lua_setiuservalue(L, 1, 3);
    if (k == 1)
        lua_pushnil(L);
    else
        lua_pushinteger(L, k);
    lua_setiuservalue(L, 1, 4);
    set_flags(get_state(L), t, MO__AG_REQ | MO__AG_NONLEAF);
    return 0;
}

/* set_mark(t, opname): t was made by a non-differentiable op (ignored for a tensor
 * that requires grad). */
static int f_set_mark(lua_State *L)
{
    mo_tensor *t = check_any(L, 1, "set_mark");
    luaL_checktype(L, 2, LUA_TSTRING);
    if (block_of(t)->ag & MO__AG_REQ) return 0;
    lua_settop(L, 2);
    lua_setiuservalue(L, 1, 3);
    set_flags(get_state(L), t, MO__AG_MARK);
    return 0;
}

/* bshape(t, out) -> t's shape key when its sizes differ from out's, else false (nil for a
 * non-tensor t): what a binary op saves of an operand (push_bshape). */
static int f_bshape(lua_State *L)
{
    push_bshape(L, tensor_at(L, 1, 1), tensor_at(L, 2, 1));
    return 1;
}

/* shape_key(t) -> t's shape key (push_shape_key): what a declared `shape` save stores. */
static int f_shape_key(lua_State *L)
{
    const mo_tensor *t = tensor_at(L, 1, 1);
    if (t == NULL) return mo__typeerror(L, 1, "shape_key", MO_TENSOR_MT);
    push_shape_key(L, t);
    return 1;
}

/* sizes(key) -> a new table of the sizes a shape key holds. */
static int f_sizes(lua_State *L)
{
    size_t len = 0;
    const char *key = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &len) : NULL;
    lua_Integer v[MO_MAX_DIMS];
    if (key == NULL || len % sizeof v[0] != 0 || len > sizeof v)
        return mo__argerror(L, 1, "sizes", "a shape key expected, got %s",
                            key ? "another string" : luaL_typename(L, 1));
    int nd = (int)(len / sizeof v[0]);
    memcpy(v, key, len);
    lua_createtable(L, nd, 0);
    for (int d = 0; d < nd; d++) {
        lua_pushinteger(L, v[d]);
        lua_rawseti(L, -2, d + 1);
    }
    return 1;
}

/* version(t) -> the storage's write count (false for a non-tensor) */
static int f_version(lua_State *L)
{
    mo_tensor *t = tensor_at(L, 1, 1);
    if (t == NULL)
        lua_pushboolean(L, 0); /* a saved non-tensor (a number): nothing to check */
    else
        lua_pushinteger(L, (lua_Integer)mo_tensor_version(t));
    return 1;
}

/* registered() -> {name = kind}: every function registered through mo__setfuncs /
 * mo__add_methods, kind "op" (dispatched: recorded when defined, else marked), "inplace",
 * "factory", "step" or "plain" (not dispatched: returns no tensor made from its arguments). */
static int f_registered(lua_State *L)
{
    static const char *const kinds[] = {"op", "inplace", "factory", "step", "plain"};
    lua_newtable(L);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &names_key) != LUA_TTABLE) return 1;
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        lua_Integer k = lua_tointeger(L, -1);
        int i = k == F_INPLACE ? 1 : k == F_FACTORY ? 2 : k == F_STEP ? 3 : k == F_PLAIN ? 4 : 0;
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushstring(L, kinds[i]);
        lua_rawset(L, -5);
    }
    lua_pop(L, 1);
    return 1;
}

/* live() -> tensors with autograd state (tests and benches) */
static int f_live(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)get_state(L)->live);
    return 1;
}

/* frames() -> the frames of recorded calls held (in progress, or left by an error until
 * the next recorded call drops them; tests) */
static int f_frames(lua_State *L)
{
    lua_pushinteger(L, get_state(L)->depth);
    return 1;
}

/* t:requires_grad_([flag = true]) -> t */
static int m_requires_grad_(lua_State *L)
{
    static const char fname[] = "requires_grad_";
    mo_tensor *t = mo__checkarg(L, 1, fname);
    int flag = 1;
    if (!lua_isnoneornil(L, 2)) {
        if (!lua_isboolean(L, 2))
            return mo__argerror(L, 2, fname, "flag must be a boolean, got %s",
                                luaL_typename(L, 2));
        flag = lua_toboolean(L, 2);
    }
    unsigned fl = block_of(t)->ag;
    if (fl & MO__AG_NONLEAF) {
        if (!flag)
            return luaL_error(L, "%s: only a leaf's flag can change; this tensor was made by a "
                              "recorded op (use t:detach())", fname);
    } else {
        lua_pushnil(L);
        lua_setiuservalue(L, 1, 3); /* drops a mark */
        set_flags(get_state(L), t, flag ? MO__AG_REQ : 0);
    }
    lua_settop(L, 1);
    return 1;
}

/* t:detach() -> a new handle on the same view with no autograd state (shares memory). */
static int m_detach(lua_State *L)
{
    mo_tensor *t = mo__checkarg(L, 1, "detach");
    mo_tensor *v = mo_lua_newtensor(L);
    mo__copy_owner(L, 1, -1);
    t = mo__recheck(L, 1, "detach", 0, NULL);
    mo__check(L, mo_tensor_share(v, t), "detach");
    return 1;
}

static const luaL_Reg ag_functions[] = {
    {"install", f_install},   {"grad_mode", f_grad_mode}, {"info", f_info},
    {"edge", f_edge},         {"set_node", f_set_node},   {"set_mark", f_set_mark},
    {"version", f_version},   {"live", f_live},           {"frames", f_frames},
    {"bshape", f_bshape},     {"shape_key", f_shape_key}, {"sizes", f_sizes},
    {"fast", f_fast},         {"registered", f_registered},
    {NULL, NULL},
};

static const luaL_Reg ag_methods[] = {
    {"requires_grad_", m_requires_grad_},
    {"detach", m_detach},
    {NULL, NULL},
};

void mo__open_autograd(lua_State *L)
{
    /* not dispatched: they are autograd's own plumbing (and requires_grad_ is not an
     * in-place write of the data). The plumbing lives in core._autograd, out of the way
     * of code that walks the module's functions. */
    lua_createtable(L, 0, 8);
    luaL_getmetatable(L, MO_TENSOR_MT);
    luaL_setfuncs(L, ag_functions, 1);
    lua_setfield(L, -2, "_autograd");
    mo__push_methods(L);
    luaL_getmetatable(L, MO_TENSOR_MT);
    luaL_setfuncs(L, ag_methods, 1);
    lua_pop(L, 1);
}
