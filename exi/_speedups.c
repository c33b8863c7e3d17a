/*
 * C accelerator of the schema-informed EXI codec (exi/codec.py is the reference and the fallback).
 *
 * It interprets the same grammar tables: exi/_c.py flattens a codec.Grammar into plain tuples once per schema
 * set and hands them to Tables(); nothing here knows any ISO 15118 message. Every decision (event codes, loop
 * counters, facet checks, error texts and bit offsets) follows codec.py line by line, so that both paths give
 * the same bytes, the same objects and the same errors.
 *
 * Memory safety rules of the decoder:
 *   - every read checks the remaining bits first; integers are read with a bounded number of octets;
 *   - a string or binary length is checked against the remaining input before anything is allocated, so an
 *     allocation is never larger than the input itself;
 *   - nesting depth is bounded by the interpreter's recursion limit (Py_EnterRecursiveCall).
 *
 * Objects are built without calling the dataclass __init__ (a keyword call costs more than the whole decode):
 * the instance is allocated with tp_alloc and the slots are filled through their member-descriptor offsets,
 * with the dataclass defaults for absent fields. exi/_c.py only enables this for plain generated dataclasses
 * (slots, no __post_init__); anything else goes through cls(**fields).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------------
 * Constants shared with codec.py
 * --------------------------------------------------------------------------------------------------------- */
enum { EV_AT_QNAME = 0, EV_AT_URI, EV_AT_ANY, EV_SE_QNAME, EV_SE_URI, EV_SE_ANY, EV_EE, EV_CH, EV_UNSUPPORTED };
enum { F_ATTRIBUTE = 0, F_VALUE, F_ELEMENT, F_ITEMS, F_ANY };
enum { NO_LOOP = 0, LOOP_STEP = 1, LOOP_ENTER = 2 };
/* datatype kinds, numbered by exi/_c.py */
enum { K_BOOLEAN = 0, K_NBIT, K_UNSIGNED, K_INTEGER, K_ENUM, K_STRING, K_HEX, K_BASE64 };
/* encode keys besides element indices (>= 0); attributes get KEY_ATTR_BASE - k */
#define KEY_NONE (-1)
#define KEY_EE (-2)
#define KEY_CH (-3)
/* field defaults */
enum { D_REQUIRED = 0, D_NONE, D_LIST, D_VALUE, D_FACTORY };

#define HEADER 0x80
#define SIMPLE_SECOND_LEVEL_BITS 3
#define MAX_INT_OCTETS 64   /* the tables never ask for more (codec: 32 for unbounded integers) */
#define MAX_WIDTH 24        /* event-code widths and n-bit integers stay far below this */

/* ---------------------------------------------------------------------------------------------------------
 * Tables
 * --------------------------------------------------------------------------------------------------------- */
typedef struct {
    int kind;                 /* B_NONE: no bound; B_I64: value in v; B_ABOVE/B_BELOW: beyond int64 */
    long long v;
} Bound;
enum { B_NONE = 0, B_I64, B_ABOVE, B_BELOW };

typedef struct {
    int kind, nbits, max_octets;
    Bound lo, hi;
    PyObject *lo_obj, *hi_obj;      /* int or None, for messages and big-number comparisons */
    Py_ssize_t min_len, max_len;    /* -1: no facet */
    PyObject *name, *kind_name;
    PyObject *members;              /* tuple (enum) */
    PyObject *index;                /* dict member -> index (enum) */
} DT;


typedef struct {
    int ev, flag, next, el, field, is_list, dt;
} Prod;

typedef struct {
    int key, code;
} EncEntry;

typedef struct {
    int width, loop_len, loop_exit, nprods, nenc;
    Prod *prods;
    EncEntry *enc;
    PyObject *expected;
} State;

typedef struct {
    PyObject *name;
    Py_ssize_t offset;   /* slot offset in the instance, -1 when unknown */
    int dflt;
    PyObject *dflt_obj;
} Field;

typedef struct {
    int kind, is_list, field, single, nbc, dt, key;
    PyObject *fname;
    PyObject **bc_key;   /* F_ELEMENT: class -> element, in dict order (keys may be None) */
    int *bc_el;
    PyObject *items;     /* F_ITEMS: dict local name -> element index */
    PyObject *not_held;  /* F_ELEMENT/F_ITEMS: the "allowed: ..." tail, NULL when codec.py itself fails */
} Plan;

typedef struct {
    int el, n;
    int *twins;
} Twin;

typedef struct {
    PyObject *cls, *name;
    int abstract, nstates, nfields, nplan, ntwins;
    State *states;
    Plan *plan;
    Twin *twins;
} TI;

/* how an element's class stores the fields of its type (the class can differ from the type's class:
 * ACDP_ConnectReq and ACDP_ConnectReqType share one type) */
typedef struct {
    PyObject *cls;
    int fast;       /* slots filled directly; else cls(**fields) */
    int nfields;    /* == the type's nfields, same order */
    Field *fields;
} Layout;

typedef struct {
    int type, dt, abstract;
    PyObject *cls, *local, *cls_name;
    Layout lay;     /* complex elements only */
} EL;

typedef struct {
    PyObject_HEAD
    PyObject *name;
    int ndt, nel, ntypes;
    DT *dts;
    EL *els;
    TI *types;
    int ndoc, doc_width;
    int *doc;
    PyObject *roots;        /* dict class -> (code, element) */
    int nfrag, frag_width;  /* nfrag < 0: no fragment grammar */
    int *frag;
    PyObject *frag_locals;
    PyObject *spec;         /* keeps every borrowed object above alive */
} Tables;

/* set by configure(): the error classes and exi.types.Choice */
static PyObject *DecodeError, *EncodeError, *ValidationError, *SchemaError, *ChoiceType;

/* ---------------------------------------------------------------------------------------------------------
 * Errors: an EXI error is collected in the context and raised once at the top, after the element path has
 * grown outwards (as codec.py prefixes e.path while the exception passes through the enclosing elements).
 * Any other Python exception (MemoryError, a TypeError from user objects) passes through untouched.
 * --------------------------------------------------------------------------------------------------------- */
typedef struct {
    const uint8_t *data;
    size_t size, pos;        /* in bits */
    int validate;
    PyObject *err_cls;       /* borrowed; NULL: no EXI error pending */
    PyObject *err_msg;
    long long err_bit;       /* -1: None */
    PyObject *path;          /* list, innermost first */
} Ctx;

static int set_err(Ctx *c, PyObject *cls, long long bit, PyObject *msg)
{
    if (msg == NULL)
        return -1;
    c->err_cls = cls;
    c->err_msg = msg;
    c->err_bit = bit;
    return -1;
}

#define ERR(c, cls, bit, ...) set_err((c), (cls), (bit), PyUnicode_FromFormat(__VA_ARGS__))

static int add_path(Ctx *c, PyObject *name)
{
    if (c->err_cls == NULL)
        return -1;
    if (c->path == NULL && (c->path = PyList_New(0)) == NULL)
        return -1;
    if (PyList_Append(c->path, name) < 0)
        return -1;
    return -1;
}

static void raise_pending(Ctx *c)
{
    if (c->err_cls == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "EXI accelerator failed without an error");
        goto out;
    }
    PyObject *path = NULL, *bit = NULL, *exc = NULL;
    if (c->path != NULL && PyList_GET_SIZE(c->path) > 0) {
        if (PyList_Reverse(c->path) < 0)
            goto out;
        PyObject *sep = PyUnicode_FromString("/");
        if (sep == NULL)
            goto out;
        path = PyUnicode_Join(sep, c->path);
        Py_DECREF(sep);
    } else {
        path = PyUnicode_FromString("");
    }
    if (path == NULL)
        goto out;
    if (c->err_bit >= 0)
        bit = PyLong_FromLongLong(c->err_bit);
    else
        bit = Py_NewRef(Py_None);
    if (bit != NULL)
        exc = PyObject_CallFunctionObjArgs(c->err_cls, c->err_msg, path, bit, NULL);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    Py_XDECREF(path);
    Py_XDECREF(bit);
out:
    Py_CLEAR(c->err_msg);
    Py_CLEAR(c->path);
    c->err_cls = NULL;
}

static void ctx_clear(Ctx *c)
{
    Py_CLEAR(c->err_msg);
    Py_CLEAR(c->path);
}

/* ---------------------------------------------------------------------------------------------------------
 * Bit reader
 * --------------------------------------------------------------------------------------------------------- */
static int truncated(Ctx *c)
{
    return ERR(c, DecodeError, (long long)c->pos, "stream ends early (truncated)");
}

/* n <= MAX_WIDTH bits, most significant first */
static inline int read_bits(Ctx *c, int n, uint32_t *out)
{
    if (n == 0) {
        *out = 0;
        return 0;
    }
    if (c->pos + (size_t)n > c->size)
        return truncated(c);
    size_t byte = c->pos >> 3;
    int shift = (int)(c->pos & 7);
    if (byte + 4 <= c->size >> 3) {
        /* one 32-bit window covers shift + n <= 7 + 24 bits */
        const uint8_t *p = c->data + byte;
        uint32_t win = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
        *out = (win << shift) >> (32 - n);
    } else {
        /* near the end: only the octets that exist */
        uint64_t acc = 0;
        int need = (shift + n + 7) >> 3;
        for (int i = 0; i < need; i++)
            acc = (acc << 8) | c->data[byte + (size_t)i];
        acc >>= (need * 8 - shift - n);
        *out = (uint32_t)(acc & ((1u << n) - 1u));
    }
    c->pos += (size_t)n;
    return 0;
}

static inline int read_octet(Ctx *c, uint32_t *out)
{
    if (c->pos + 8 > c->size)
        return truncated(c);
    size_t byte = c->pos >> 3;
    int shift = (int)(c->pos & 7);
    if (shift == 0)
        *out = c->data[byte];
    else
        *out = (uint32_t)(((c->data[byte] << shift) | (c->data[byte + 1] >> (8 - shift))) & 0xFF);
    c->pos += 8;
    return 0;
}

/* EXI unsigned integer: 7-bit groups, least significant first. Values up to 2^64-1 come back in *out and
 * *big stays NULL; longer ones come back as a Python int in *big. */
static int read_uint(Ctx *c, int max_octets, uint64_t *out, PyObject **big)
{
    uint8_t groups[MAX_INT_OCTETS];
    size_t start = c->pos;
    int n = 0;
    *big = NULL;
    for (;;) {
        if (n == max_octets)
            return ERR(c, DecodeError, (long long)start, "integer longer than %d octets", max_octets);
        uint32_t b;
        if (read_octet(c, &b) < 0)
            return -1;
        groups[n++] = (uint8_t)(b & 0x7F);
        if (b < 0x80)
            break;
    }
    /* 9 groups hold 63 bits; a 10th group of 0 or 1 still fits 64 */
    if (n <= 9 || (n == 10 && groups[9] <= 1)) {
        uint64_t v = 0;
        for (int i = n - 1; i >= 0; i--)
            v = (v << 7) | groups[i];
        *out = v;
        return 0;
    }
    PyObject *v = PyLong_FromLong(0), *seven = PyLong_FromLong(7);
    if (v == NULL || seven == NULL)
        goto fail;
    for (int i = n - 1; i >= 0; i--) {
        PyObject *g = PyLong_FromLong(groups[i]), *t;
        if (g == NULL)
            goto fail;
        t = PyNumber_Lshift(v, seven);
        Py_SETREF(v, t);
        if (v == NULL) {
            Py_DECREF(g);
            goto fail;
        }
        t = PyNumber_Or(v, g);
        Py_DECREF(g);
        Py_SETREF(v, t);
        if (v == NULL)
            goto fail;
    }
    Py_DECREF(seven);
    *big = v;
    return 0;
fail:
    Py_XDECREF(v);
    Py_XDECREF(seven);
    return -1;
}

/* ---------------------------------------------------------------------------------------------------------
 * Bit writer
 * --------------------------------------------------------------------------------------------------------- */
typedef struct {
    uint8_t *buf;
    size_t cap, len;     /* whole octets in buf */
    uint64_t acc;        /* pending bits, right-aligned */
    int nacc;
    int heap;
    int validate;
    uint8_t local[512];
} Writer;

static int w_grow(Writer *w, size_t extra)
{
    if (w->len + extra <= w->cap)
        return 0;
    size_t cap = w->cap * 2;
    while (cap < w->len + extra)
        cap *= 2;
    uint8_t *nb = PyMem_Malloc(cap);
    if (nb == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(nb, w->buf, w->len);
    if (w->heap)
        PyMem_Free(w->buf);
    w->buf = nb;
    w->cap = cap;
    w->heap = 1;
    return 0;
}

/* n <= 24 */
static inline int w_bits(Writer *w, uint32_t value, int n)
{
    w->acc = (w->acc << n) | (value & ((1u << n) - 1u));
    w->nacc += n;
    if (w->nacc >= 8) {
        if (w->len + 4 > w->cap && w_grow(w, 4) < 0)
            return -1;
        do {
            w->nacc -= 8;
            w->buf[w->len++] = (uint8_t)(w->acc >> w->nacc);
        } while (w->nacc >= 8);
        w->acc &= (1ull << w->nacc) - 1ull;
    }
    return 0;
}

static int w_uint64(Writer *w, uint64_t v)
{
    while (v >= 0x80) {
        if (w_bits(w, (uint32_t)((v & 0x7F) | 0x80), 8) < 0)
            return -1;
        v >>= 7;
    }
    return w_bits(w, (uint32_t)v, 8);
}

/* a non-negative Python int of any size */
static int w_uint_obj(Writer *w, PyObject *v)
{
    unsigned long long u = PyLong_AsUnsignedLongLong(v);
    if (!(u == (unsigned long long)-1 && PyErr_Occurred()))
        return w_uint64(w, u);
    if (!PyErr_ExceptionMatches(PyExc_OverflowError))
        return -1;
    PyErr_Clear();
    /* big: emit 9 groups (63 bits) at a time */
    PyObject *rest = Py_NewRef(v), *shift = PyLong_FromLong(63), *mask = PyLong_FromUnsignedLongLong((1ull << 63) - 1);
    int rc = -1;
    if (shift == NULL || mask == NULL)
        goto done;
    for (;;) {
        PyObject *low = PyNumber_And(rest, mask);
        if (low == NULL)
            goto done;
        uint64_t lv = PyLong_AsUnsignedLongLong(low);
        Py_DECREF(low);
        if (PyErr_Occurred())
            goto done;
        PyObject *hi = PyNumber_Rshift(rest, shift);
        if (hi == NULL)
            goto done;
        Py_SETREF(rest, hi);
        int more = PyObject_IsTrue(rest);
        if (more < 0)
            goto done;
        if (!more) {
            rc = w_uint64(w, lv);
            goto done;
        }
        for (int i = 0; i < 9; i++) {
            if (w_bits(w, (uint32_t)((lv & 0x7F) | 0x80), 8) < 0)
                goto done;
            lv >>= 7;
        }
    }
done:
    Py_XDECREF(rest);
    Py_XDECREF(shift);
    Py_XDECREF(mask);
    return rc;
}

static int w_octets(Writer *w, const uint8_t *p, size_t n)
{
    if (w->nacc == 0) {
        if (w_grow(w, n) < 0)
            return -1;
        memcpy(w->buf + w->len, p, n);
        w->len += n;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (w_bits(w, p[i], 8) < 0)
            return -1;
    return 0;
}

static PyObject *w_getvalue(Writer *w)
{
    if (w->nacc > 0 && w_bits(w, 0, 8 - w->nacc) < 0)
        return NULL;
    return PyBytes_FromStringAndSize((const char *)w->buf, (Py_ssize_t)w->len);
}

static void w_init(Writer *w, int validate)
{
    w->buf = w->local;
    w->cap = sizeof(w->local);
    w->len = 0;
    w->acc = 0;
    w->nacc = 0;
    w->heap = 0;
    w->validate = validate;
}

static void w_free(Writer *w)
{
    if (w->heap)
        PyMem_Free(w->buf);
}

/* ---------------------------------------------------------------------------------------------------------
 * Facets
 * --------------------------------------------------------------------------------------------------------- */
/* 1 when v lies outside [lo, hi] (v fits a long long) */
static int out_of_range_i64(const DT *dt, long long v)
{
    if (dt->lo.kind == B_I64 ? v < dt->lo.v : dt->lo.kind == B_ABOVE)
        return 1;
    if (dt->hi.kind == B_I64 ? v > dt->hi.v : dt->hi.kind == B_BELOW)
        return 1;
    return 0;
}

/* same for any Python int; -1 on error */
static int out_of_range_obj(const DT *dt, PyObject *v)
{
    if (dt->lo.kind != B_NONE) {
        int r = PyObject_RichCompareBool(v, dt->lo_obj, Py_LT);
        if (r != 0)
            return r;
    }
    if (dt->hi.kind != B_NONE) {
        int r = PyObject_RichCompareBool(v, dt->hi_obj, Py_GT);
        if (r != 0)
            return r;
    }
    return 0;
}

static int range_error(Ctx *c, PyObject *cls, long long bit, const DT *dt, PyObject *v)
{
    return ERR(c, cls, bit, "value %S outside %U [%S, %S]", v, dt->name, dt->lo_obj, dt->hi_obj);
}

/* codec.Datatype.check_length; what: "string", "binary", or the kind name */
static int length_bad(const DT *dt, Py_ssize_t n)
{
    return (dt->max_len >= 0 && n > dt->max_len) || (dt->min_len >= 0 && n < dt->min_len);
}

static int length_error(Ctx *c, PyObject *cls, long long bit, const DT *dt, const char *what, PyObject *what_obj,
                        Py_ssize_t n)
{
    PyObject *hi = dt->max_len >= 0 ? PyUnicode_FromFormat("%zd", dt->max_len) : PyUnicode_FromString("");
    if (hi == NULL)
        return -1;
    Py_ssize_t lo = dt->min_len > 0 ? dt->min_len : 0;
    int rc;
    if (what_obj != NULL)
        rc = ERR(c, cls, bit, "%U length %zd outside %U [%zd, %U]", what_obj, n, dt->name, lo, hi);
    else
        rc = ERR(c, cls, bit, "%s length %zd outside %U [%zd, %U]", what, n, dt->name, lo, hi);
    Py_DECREF(hi);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------------
 * Decoding
 * --------------------------------------------------------------------------------------------------------- */
static PyObject *dec_complex(Ctx *c, const Tables *T, int ei);

static PyObject *int_from(uint64_t u, int negative)
{
    if (!negative)
        return PyLong_FromUnsignedLongLong(u);
    if (u <= (uint64_t)LLONG_MAX)
        return PyLong_FromLongLong(-(long long)u - 1);
    PyObject *m = PyLong_FromUnsignedLongLong(u), *r;
    if (m == NULL)
        return NULL;
    r = PyNumber_Negative(m);
    Py_DECREF(m);
    if (r == NULL)
        return NULL;
    PyObject *one = PyLong_FromLong(1);
    if (one == NULL) {
        Py_DECREF(r);
        return NULL;
    }
    Py_SETREF(r, PyNumber_Subtract(r, one));
    Py_DECREF(one);
    return r;
}

static PyObject *dec_string(Ctx *c, const DT *dt)
{
    size_t start = c->pos;
    uint64_t n;
    PyObject *big;
    if (read_uint(c, 5, &n, &big) < 0)
        return NULL;  /* 5 octets: never big */
    if (n < 2) {
        ERR(c, DecodeError, (long long)start,
            "string-table %s value hit in %U (the ISO 15118 profile uses no string table)",
            n == 0 ? "local" : "global", dt->name);
        return NULL;
    }
    n -= 2;
    /* one octet per character at least: the length is bounded by the input before any allocation */
    if (n * 8 > c->size - c->pos) {
        ERR(c, DecodeError, (long long)start, "string length %llu exceeds the remaining input",
            (unsigned long long)n);
        return NULL;
    }
    if (c->validate && length_bad(dt, (Py_ssize_t)n)) {
        length_error(c, ValidationError, -1, dt, "string", NULL, (Py_ssize_t)n);
        return NULL;
    }
    size_t pos = c->pos;
    /* ASCII fast path: n octets below 0x80 are n one-octet code points */
    PyObject *s = PyUnicode_New((Py_ssize_t)n, 127);
    if (s == NULL)
        return NULL;
    Py_UCS1 *p = PyUnicode_1BYTE_DATA(s);
    int ascii = 1;
    for (size_t i = 0; i < n; i++) {
        uint32_t b = 0;
        (void)read_octet(c, &b);  /* cannot fail: n * 8 <= remaining */
        if (b >= 0x80) {
            ascii = 0;
            break;
        }
        p[i] = (Py_UCS1)b;
    }
    if (ascii)
        return s;
    Py_DECREF(s);
    c->pos = pos;
    Py_UCS4 *buf = PyMem_Malloc((n ? n : 1) * sizeof(Py_UCS4));
    if (buf == NULL)
        return PyErr_NoMemory();
    for (size_t i = 0; i < n; i++) {
        uint64_t cp;
        if (read_uint(c, 3, &cp, &big) < 0)
            goto bad;
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            char hex[24];
            snprintf(hex, sizeof hex, "%#llx", (unsigned long long)cp);
            ERR(c, DecodeError, (long long)c->pos, "invalid code point %s in %U", hex, dt->name);
            goto bad;
        }
        buf[i] = (Py_UCS4)cp;
    }
    s = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, buf, (Py_ssize_t)n);
    PyMem_Free(buf);
    return s;
bad:
    PyMem_Free(buf);
    return NULL;
}

static PyObject *dec_binary(Ctx *c, const DT *dt)
{
    size_t start = c->pos;
    uint64_t n;
    PyObject *big;
    if (read_uint(c, 5, &n, &big) < 0)
        return NULL;
    if (n * 8 > c->size - c->pos) {
        ERR(c, DecodeError, (long long)start, "binary length %llu exceeds the remaining input",
            (unsigned long long)n);
        return NULL;
    }
    if (c->validate && length_bad(dt, (Py_ssize_t)n)) {
        length_error(c, ValidationError, (long long)start, dt, "binary", NULL, (Py_ssize_t)n);
        return NULL;
    }
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    if (b == NULL)
        return NULL;
    uint8_t *p = (uint8_t *)PyBytes_AS_STRING(b);
    if ((c->pos & 7) == 0) {
        memcpy(p, c->data + (c->pos >> 3), (size_t)n);
        c->pos += (size_t)n * 8;
    } else {
        for (size_t i = 0; i < n; i++) {
            uint32_t o = 0;
            (void)read_octet(c, &o);  /* cannot fail: checked above */
            p[i] = (uint8_t)o;
        }
    }
    return b;
}

static PyObject *dec_value(Ctx *c, const DT *dt)
{
    uint32_t bits;
    size_t start = c->pos;
    switch (dt->kind) {
    case K_BOOLEAN:
        if (read_bits(c, 1, &bits) < 0)
            return NULL;
        return PyBool_FromLong(bits);
    case K_NBIT: {
        if (read_bits(c, dt->nbits, &bits) < 0)
            return NULL;
        long long v = (long long)bits + dt->lo.v;
        if (c->validate && out_of_range_i64(dt, v)) {
            PyObject *o = PyLong_FromLongLong(v);
            if (o != NULL) {
                range_error(c, ValidationError, (long long)c->pos, dt, o);
                Py_DECREF(o);
            }
            return NULL;
        }
        return PyLong_FromLongLong(v);
    }
    case K_UNSIGNED:
    case K_INTEGER: {
        uint32_t negative = 0;
        uint64_t u;
        PyObject *v;
        if (dt->kind == K_INTEGER && read_bits(c, 1, &negative) < 0)
            return NULL;
        if (read_uint(c, dt->max_octets, &u, &v) < 0)
            return NULL;
        if (v == NULL) {
            if (!(c->validate && (dt->kind == K_INTEGER || dt->hi.kind != B_NONE)))
                return int_from(u, (int)negative);
            if (u <= (uint64_t)LLONG_MAX) {
                long long sv = negative ? -(long long)u - 1 : (long long)u;
                int bad = dt->kind == K_UNSIGNED ? (dt->hi.kind == B_I64 ? sv > dt->hi.v : dt->hi.kind == B_BELOW)
                                                 : out_of_range_i64(dt, sv);
                if (!bad)
                    return PyLong_FromLongLong(sv);
            }
            v = int_from(u, (int)negative);
            if (v == NULL)
                return NULL;
        } else if (negative) {
            PyObject *m = PyNumber_Invert(v);  /* -v - 1 */
            Py_SETREF(v, m);
            if (v == NULL)
                return NULL;
        }
        if (c->validate) {
            int bad;
            if (dt->kind == K_UNSIGNED)
                bad = dt->hi.kind != B_NONE ? PyObject_RichCompareBool(v, dt->hi_obj, Py_GT) : 0;
            else
                bad = out_of_range_obj(dt, v);
            if (bad) {
                if (bad > 0)
                    range_error(c, ValidationError, (long long)start, dt, v);
                Py_DECREF(v);
                return NULL;
            }
        }
        return v;
    }
    case K_ENUM: {
        if (read_bits(c, dt->nbits, &bits) < 0)
            return NULL;
        Py_ssize_t n = PyTuple_GET_SIZE(dt->members);
        if ((Py_ssize_t)bits >= n) {
            ERR(c, DecodeError, (long long)start, "enumeration index %u beyond the %zd values of %U",
                (unsigned)bits, n, dt->name);
            return NULL;
        }
        return Py_NewRef(PyTuple_GET_ITEM(dt->members, bits));
    }
    case K_STRING:
        return dec_string(c, dt);
    default:
        return dec_binary(c, dt);
    }
}

/* After an escape where typed text is expected: only the second-level EE (code 0) of an empty string or
 * binary, as EXIficient writes it. `where` is "<element>" for simple-typed elements, the type name for
 * simple content of a complex type (the same texts as codec.py). */
static PyObject *dec_empty_content(Ctx *c, const DT *dt, PyObject *where, long long start)
{
    uint32_t code;
    if (read_bits(c, SIMPLE_SECOND_LEVEL_BITS, &code) < 0)
        return NULL;
    if (code != 0 || dt->kind < K_STRING) {
        ERR(c, DecodeError, start, "deviation (second-level event %u) in %U is not supported", (unsigned)code, where);
        return NULL;
    }
    if (c->validate && dt->min_len > 0) {
        ERR(c, ValidationError, start, "%U is empty but %U needs %zd or more", where, dt->name, dt->min_len);
        return NULL;
    }
    if (dt->kind == K_STRING)
        return PyUnicode_New(0, 0);
    return PyBytes_FromStringAndSize(NULL, 0);
}

/* The typed-text production of a state whose value may be empty (string or binary simple content). */
static const Prod *state_text(const Tables *T, const State *st)
{
    for (int i = 0; i < st->nprods; i++)
        if (st->prods[i].ev == EV_CH && st->prods[i].dt >= 0 && T->dts[st->prods[i].dt].kind >= K_STRING)
            return &st->prods[i];
    return NULL;
}

static int is_empty_text(PyObject *v)
{
    return (PyUnicode_Check(v) && PyUnicode_GET_LENGTH(v) == 0) || (PyBytes_Check(v) && PyBytes_GET_SIZE(v) == 0) ||
           (PyByteArray_Check(v) && PyByteArray_GET_SIZE(v) == 0);
}

static PyObject *dec_element(Ctx *c, const Tables *T, int ei)
{
    const EL *el = &T->els[ei];
    if (el->type < 0) {
        /* simple type: CH then EE, each a 1-bit code (0) because of the non-strict escape */
        const DT *dt = &T->dts[el->dt];
        uint32_t bit;
        if (read_bits(c, 1, &bit) < 0)
            return NULL;
        if (bit) {
            PyObject *where = PyUnicode_FromFormat("<%U>", el->local);
            if (where == NULL)
                return NULL;
            PyObject *v = dec_empty_content(c, dt, where, (long long)c->pos - 1);
            Py_DECREF(where);
            return v;
        }
        PyObject *v = dec_value(c, dt);
        if (v == NULL)
            return NULL;
        if (read_bits(c, 1, &bit) < 0 ||
            (bit && ERR(c, DecodeError, (long long)c->pos - 1,
                        "deviation (second-level event) where </%U> is expected", el->local))) {
            Py_DECREF(v);
            return NULL;
        }
        return v;
    }
    const TI *t = &T->types[el->type];
    if (el->abstract || t->abstract) {
        ERR(c, DecodeError, (long long)c->pos, "<%U> is abstract and cannot appear in a document", el->local);
        return NULL;
    }
    if (Py_EnterRecursiveCall(" while decoding EXI"))
        return NULL;
    PyObject *r = dec_complex(c, T, ei);
    Py_LeaveRecursiveCall();
    return r;
}

/* cls(**vals) for the unset-value-free fields; used when the fast layout is off or a required field is
 * missing (then the dataclass raises its own TypeError, as in codec.py) */
static PyObject *build_slow(const Layout *t, PyObject **vals)
{
    PyObject *kw = PyDict_New();
    if (kw == NULL)
        return NULL;
    for (int i = 0; i < t->nfields; i++)
        if (vals[i] != NULL && PyDict_SetItem(kw, t->fields[i].name, vals[i]) < 0) {
            Py_DECREF(kw);
            return NULL;
        }
    PyObject *empty = PyTuple_New(0), *r = NULL;
    if (empty != NULL)
        r = PyObject_Call(t->cls, empty, kw);
    Py_XDECREF(empty);
    Py_DECREF(kw);
    return r;
}

/* Fill the slots directly: the generated dataclass __init__ does nothing else (checked by exi/_c.py).
 * Takes over the references in vals (set to NULL) on the fast path. */
static PyObject *build(const Layout *t, PyObject **vals)
{
    if (!t->fast)
        return build_slow(t, vals);
    for (int i = 0; i < t->nfields; i++)
        if (vals[i] == NULL && t->fields[i].dflt == D_REQUIRED)
            return build_slow(t, vals);
    PyTypeObject *tp = (PyTypeObject *)t->cls;
    PyObject *obj = tp->tp_alloc(tp, 0);
    if (obj == NULL)
        return NULL;
    for (int i = 0; i < t->nfields; i++) {
        const Field *f = &t->fields[i];
        PyObject *v = vals[i];
        if (v != NULL) {
            vals[i] = NULL;  /* the slot takes the reference */
        } else if (f->dflt == D_NONE) {
            v = Py_NewRef(Py_None);
        } else if (f->dflt == D_LIST) {
            v = PyList_New(0);
        } else if (f->dflt == D_VALUE) {
            v = Py_NewRef(f->dflt_obj);
        } else {
            v = PyObject_CallNoArgs(f->dflt_obj);
        }
        if (v == NULL) {
            Py_DECREF(obj);
            return NULL;
        }
        PyObject **slot = (PyObject **)((char *)obj + f->offset);
        Py_XSETREF(*slot, v);
    }
    return obj;
}

#define STACK_FIELDS 48

static PyObject *dec_complex(Ctx *c, const Tables *T, int ei)
{
    const TI *t = &T->types[T->els[ei].type];
    PyObject *stack_vals[STACK_FIELDS];
    PyObject **vals = stack_vals;
    PyObject *result = NULL;
    if (t->nfields > STACK_FIELDS) {
        vals = PyMem_Calloc((size_t)t->nfields, sizeof(PyObject *));
        if (vals == NULL)
            return PyErr_NoMemory();
    } else {
        memset(stack_vals, 0, sizeof(PyObject *) * (size_t)t->nfields);
    }
    int si = 0, count = 0;
    for (;;) {
        const State *st = &t->states[si];
        size_t start = c->pos;
        uint32_t code;
        if (read_bits(c, st->width, &code) < 0)
            goto done;
        if ((int)code == st->nprods) {
            const Prod *text = state_text(T, st);
            if (text != NULL) {  /* simple content written without characters: second-level EE */
                PyObject *v = dec_empty_content(c, &T->dts[text->dt], t->name, (long long)start);
                if (v == NULL)
                    goto done;
                Py_XSETREF(vals[text->field], v);
                result = build(&T->els[ei].lay, vals);
                goto done;
            }
        }
        if ((int)code >= st->nprods) {
            const char *what = (int)code == st->nprods ? "escape to second-level events (deviation)"
                                                       : "unused event code";
            ERR(c, DecodeError, (long long)start, "%s %u in %U; expected %U", what, (unsigned)code, t->name,
                st->expected);
            goto done;
        }
        const Prod *p = &st->prods[code];
        int nxt = p->next;
        if (p->ev == EV_SE_QNAME) {
            PyObject *v = dec_element(c, T, p->el);
            if (v == NULL) {
                add_path(c, T->els[p->el].local);
                goto done;
            }
            if (p->is_list) {
                if (p->is_list == 2) {
                    PyObject *ch = PyObject_CallFunctionObjArgs(ChoiceType, T->els[p->el].local, v, NULL);
                    Py_SETREF(v, ch);
                    if (v == NULL)
                        goto done;
                }
                PyObject *lst = vals[p->field];
                if (lst == NULL) {
                    lst = PyList_New(1);
                    if (lst == NULL) {
                        Py_DECREF(v);
                        goto done;
                    }
                    PyList_SET_ITEM(lst, 0, v);
                    vals[p->field] = lst;
                } else {
                    int rc = PyList_Append(lst, v);
                    Py_DECREF(v);
                    if (rc < 0)
                        goto done;
                }
            } else {
                Py_XSETREF(vals[p->field], v);
            }
        } else if (p->ev == EV_EE) {
            result = build(&T->els[ei].lay, vals);
            goto done;
        } else if (p->ev == EV_AT_QNAME || p->ev == EV_CH) {
            PyObject *v = dec_value(c, &T->dts[p->dt]);
            if (v == NULL)
                goto done;
            Py_XSETREF(vals[p->field], v);
        } else {
            ERR(c, DecodeError, (long long)start, "wildcard or mixed content in %U is not supported", t->name);
            goto done;
        }
        if (p->flag) {
            if (p->flag == LOOP_STEP) {
                count++;
                if (count == st->loop_len)
                    nxt = st->loop_exit;
            } else {
                count = 0;
            }
        }
        si = nxt;  /* checked at load time: every non-EE production has a next state */
    }
done:
    for (int i = 0; i < t->nfields; i++)
        Py_XDECREF(vals[i]);
    if (vals != stack_vals)
        PyMem_Free(vals);
    return result;
}

static int read_header(Ctx *c)
{
    if (c->size < 8)
        return ERR(c, DecodeError, 0, "empty stream: no EXI header");
    uint8_t first = c->data[0];
    if (c->size >= 32 && memcmp(c->data, "$EXI", 4) == 0)
        return ERR(c, DecodeError, 0, "EXI cookie '$EXI' is not used by ISO 15118 (header must be 0x80)");
    if (first == HEADER) {
        c->pos = 8;
        return 0;
    }
    char hex[8];  /* formatted only on error: snprintf costs more than a whole small decode */
    snprintf(hex, sizeof hex, "0x%02x", first);
    if (first >> 6 != 2)
        return ERR(c, DecodeError, 0, "header %s: distinguishing bits are not 10", hex);
    if (first & 0x20)
        return ERR(c, DecodeError, 2, "header announces EXI options; ISO 15118 fixes them out of band");
    return ERR(c, DecodeError, 3, "header %s: EXI format version other than 1", hex);
}

static int ctx_init(Ctx *c, Py_buffer *view, int validate)
{
    memset(c, 0, sizeof *c);
    c->data = view->buf;
    if ((size_t)view->len > SIZE_MAX / 8) {
        PyErr_SetString(PyExc_OverflowError, "EXI stream too long");
        return -1;
    }
    c->size = (size_t)view->len * 8;
    c->validate = validate;
    c->err_bit = -1;
    return 0;
}

static PyObject *Tables_decode(Tables *T, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decode(data, validate)");
        return NULL;
    }
    int validate = PyObject_IsTrue(args[1]);
    if (validate < 0)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    Ctx c;
    PyObject *r = NULL;
    if (ctx_init(&c, &view, validate) < 0)
        goto out;
    if (read_header(&c) < 0)
        goto fail;
    size_t start = c.pos;
    uint32_t code;
    if (read_bits(&c, T->doc_width, &code) < 0)
        goto fail;
    if ((int)code >= T->ndoc) {
        ERR(&c, DecodeError, (long long)start, "document event code %u: not a global element of %U (%d defined)",
            (unsigned)code, T->name, T->ndoc);
        goto fail;
    }
    int ei = T->doc[code];
    r = dec_element(&c, T, ei);
    if (r == NULL) {
        add_path(&c, T->els[ei].local);
        goto fail;
    }
    goto out;
fail:
    raise_pending(&c);
out:
    ctx_clear(&c);
    PyBuffer_Release(&view);
    return r;
}

static PyObject *Tables_decode_fragment(Tables *T, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decode_fragment(data, validate)");
        return NULL;
    }
    if (T->nfrag < 0) {
        PyErr_Format(SchemaError, "schema set %U has no fragment grammar", T->name);
        return NULL;
    }
    int validate = PyObject_IsTrue(args[1]);
    if (validate < 0)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    Ctx c;
    PyObject *r = NULL, *results = PyList_New(0);
    if (results == NULL || ctx_init(&c, &view, validate) < 0) {
        Py_XDECREF(results);
        PyBuffer_Release(&view);
        return NULL;
    }
    if (read_header(&c) < 0)
        goto fail;
    uint32_t ed = (uint32_t)T->nfrag + 1;
    for (;;) {
        size_t start = c.pos;
        uint32_t code;
        if (read_bits(&c, T->frag_width, &code) < 0)
            goto fail;
        if (code == ed)
            break;
        if ((int)code >= T->nfrag) {
            ERR(&c, DecodeError, (long long)start, "fragment event code %u: not an element of %U", (unsigned)code,
                T->name);
            goto fail;
        }
        int ei = T->frag[code];
        if (ei < 0) {
            ERR(&c, DecodeError, (long long)start,
                "<%U> is declared with several types; the relaxed fragment grammar is not supported",
                PyTuple_GET_ITEM(T->frag_locals, code));
            goto fail;
        }
        PyObject *v = dec_element(&c, T, ei);
        if (v == NULL)
            goto fail;
        int rc = PyList_Append(results, v);
        Py_DECREF(v);
        if (rc < 0)
            goto fail;
    }
    if (PyList_GET_SIZE(results) != 1) {
        ERR(&c, DecodeError, -1, "fragment holds %zd elements; expected exactly one", PyList_GET_SIZE(results));
        goto fail;
    }
    r = Py_NewRef(PyList_GET_ITEM(results, 0));
    goto out;
fail:
    raise_pending(&c);
out:
    ctx_clear(&c);
    Py_DECREF(results);
    PyBuffer_Release(&view);
    return r;
}

/* ---------------------------------------------------------------------------------------------------------
 * Encoding
 * --------------------------------------------------------------------------------------------------------- */
typedef struct {
    Ctx c;   /* error collection only */
    Writer w;
} Enc;

static int enc_complex(Enc *e, const Tables *T, int ei, PyObject *obj);

static int type_error(Enc *e, const DT *dt, const char *expected, PyObject *v)
{
    PyObject *tn = PyType_GetName(Py_TYPE(v));
    if (tn == NULL)
        return -1;
    int rc = ERR(&e->c, EncodeError, -1, "%U needs %s, got %U %R", dt->name, expected, tn, v);
    Py_DECREF(tn);
    return rc;
}

/* a Python int (exact type checked by the caller): range facets, then the sign bit (xs:integer) and the
 * magnitude. codec.py checks an unsigned value's range when validating and whenever it is negative. */
static int enc_int(Enc *e, const DT *dt, PyObject *v)
{
    int overflow;
    long long sv = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (sv == -1 && PyErr_Occurred())
        return -1;
    int check = e->w.validate || (dt->kind == K_UNSIGNED && (overflow < 0 || (!overflow && sv < 0)));
    if (!overflow) {
        if (check && out_of_range_i64(dt, sv))
            return range_error(&e->c, ValidationError, -1, dt, v);
        if (dt->kind == K_UNSIGNED) {
            if (sv < 0)  /* only reachable without a lower bound, which the tables never have */
                return range_error(&e->c, ValidationError, -1, dt, v);
            return w_uint64(&e->w, (uint64_t)sv);
        }
        if (sv < 0) {
            if (w_bits(&e->w, 1, 1) < 0)
                return -1;
            return w_uint64(&e->w, (uint64_t)(-(sv + 1)));
        }
        if (w_bits(&e->w, 0, 1) < 0)
            return -1;
        return w_uint64(&e->w, (uint64_t)sv);
    }
    if (check) {
        int bad = out_of_range_obj(dt, v);
        if (bad < 0)
            return -1;
        if (bad)
            return range_error(&e->c, ValidationError, -1, dt, v);
    }
    int negative = overflow < 0;
    if (dt->kind == K_UNSIGNED) {
        if (negative)
            return range_error(&e->c, ValidationError, -1, dt, v);
        return w_uint_obj(&e->w, v);
    }
    if (w_bits(&e->w, negative ? 1 : 0, 1) < 0)
        return -1;
    if (!negative)
        return w_uint_obj(&e->w, v);
    PyObject *m = PyNumber_Invert(v);  /* -v - 1 */
    if (m == NULL)
        return -1;
    int rc = w_uint_obj(&e->w, m);
    Py_DECREF(m);
    return rc;
}

static int enc_value(Enc *e, const DT *dt, PyObject *v)
{
    Writer *w = &e->w;
    switch (dt->kind) {
    case K_BOOLEAN:
        if (!PyBool_Check(v))
            return type_error(e, dt, "bool", v);
        return w_bits(w, v == Py_True, 1);
    case K_NBIT: {
        if (!PyLong_CheckExact(v))
            return type_error(e, dt, "int", v);
        int overflow;
        long long sv = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (sv == -1 && PyErr_Occurred())
            return -1;
        /* offset outside the n-bit field: always a range error, validate or not */
        if (overflow || sv < dt->lo.v || (uint64_t)sv - (uint64_t)dt->lo.v >= (1ull << dt->nbits) ||
            (w->validate && out_of_range_i64(dt, sv)))
            return range_error(&e->c, ValidationError, -1, dt, v);
        return w_bits(w, (uint32_t)((uint64_t)sv - (uint64_t)dt->lo.v), dt->nbits);
    }
    case K_UNSIGNED:
    case K_INTEGER:
        if (!PyLong_CheckExact(v))
            return type_error(e, dt, "int", v);
        return enc_int(e, dt, v);
    case K_ENUM: {
        PyObject *i = PyDict_GetItemWithError(dt->index, v);
        if (i == NULL) {
            if (PyErr_Occurred())
                return -1;
            return ERR(&e->c, ValidationError, -1, "%R is not a value of %U", v, dt->name);
        }
        return w_bits(w, (uint32_t)PyLong_AsLong(i), dt->nbits);
    }
    case K_STRING: {
        if (!PyUnicode_CheckExact(v))
            return type_error(e, dt, "str", v);
        Py_ssize_t n = PyUnicode_GET_LENGTH(v);
        if (w->validate && length_bad(dt, n))
            return length_error(&e->c, ValidationError, -1, dt, "string", NULL, n);
        if (w_uint64(w, (uint64_t)n + 2) < 0)
            return -1;
        if (PyUnicode_IS_ASCII(v))
            return w_octets(w, PyUnicode_1BYTE_DATA(v), (size_t)n);
        int kind = PyUnicode_KIND(v);
        const void *data = PyUnicode_DATA(v);
        for (Py_ssize_t i = 0; i < n; i++)
            if (w_uint64(w, PyUnicode_READ(kind, data, i)) < 0)
                return -1;
        return 0;
    }
    default: {
        const uint8_t *p;
        Py_ssize_t n;
        if (PyBytes_Check(v)) {
            p = (const uint8_t *)PyBytes_AS_STRING(v);
            n = PyBytes_GET_SIZE(v);
        } else if (PyByteArray_Check(v)) {
            p = (const uint8_t *)PyByteArray_AS_STRING(v);
            n = PyByteArray_GET_SIZE(v);
        } else {
            return type_error(e, dt, "bytes", v);
        }
        if (w->validate && length_bad(dt, n))
            return length_error(&e->c, ValidationError, -1, dt, "binary", NULL, n);
        if (w_uint64(w, (uint64_t)n) < 0)
            return -1;
        return w_octets(w, p, (size_t)n);
    }
    }
}

static int enc_element(Enc *e, const Tables *T, int ei, PyObject *value)
{
    const EL *el = &T->els[ei];
    if (el->type < 0) {
        const DT *dt = &T->dts[el->dt];
        if (dt->kind >= K_STRING &&
            ((PyUnicode_Check(value) && PyUnicode_GET_LENGTH(value) == 0) ||
             (PyBytes_Check(value) && PyBytes_GET_SIZE(value) == 0) ||
             (PyByteArray_Check(value) && PyByteArray_GET_SIZE(value) == 0))) {
            if (e->w.validate && length_bad(dt, 0))
                return length_error(&e->c, ValidationError, -1, dt, NULL, dt->kind_name, 0);
            return w_bits(&e->w, 0x8, 1 + SIMPLE_SECOND_LEVEL_BITS);  /* escape, second-level EE */
        }
        if (w_bits(&e->w, 0, 1) < 0 || enc_value(e, dt, value) < 0)
            return -1;
        return w_bits(&e->w, 0, 1);
    }
    int ok = PyObject_IsInstance(value, el->cls);
    if (ok < 0)
        return -1;
    if (!ok) {
        PyObject *tn = PyType_GetName(Py_TYPE(value));
        if (tn == NULL)
            return -1;
        int rc = ERR(&e->c, EncodeError, -1, "<%U> needs a %U, got %U", el->local, el->cls_name, tn);
        Py_DECREF(tn);
        return rc;
    }
    if (el->abstract || T->types[el->type].abstract)  /* numbered by the grammar, never valid on the wire */
        return ERR(&e->c, EncodeError, -1, "<%U> is abstract: use one of the elements that substitute it",
                   el->local);
    if (Py_EnterRecursiveCall(" while encoding EXI"))
        return -1;
    int rc = enc_complex(e, T, ei, value);
    Py_LeaveRecursiveCall();
    return rc;
}

static PyObject *get_field(const Layout *t, const Plan *p, PyObject *obj)
{
    if (t->fast && (PyObject *)Py_TYPE(obj) == t->cls && p->field >= 0) {
        PyObject *v = *(PyObject **)((char *)obj + t->fields[p->field].offset);
        if (v != NULL)
            return Py_NewRef(v);
    }
    return PyObject_GetAttr(obj, p->fname);  /* also raises the right AttributeError for an unset slot */
}

static int find_code(const State *st, int key)
{
    for (int i = 0; i < st->nenc; i++)
        if (st->enc[i].key == key)
            return i;
    return -1;
}

static int enc_complex(Enc *e, const Tables *T, int ei, PyObject *obj)
{
    const TI *t = &T->types[T->els[ei].type];
    const Layout *lay = &T->els[ei].lay;
    int si = 0, count = 0;
    for (int pi = 0; pi < t->nplan; pi++) {
        const Plan *p = &t->plan[pi];
        PyObject *v = get_field(lay, p, obj);
        if (v == NULL)
            return -1;
        if (v == Py_None) {
            Py_DECREF(v);
            continue;
        }
        PyObject *seq = v;  /* holds the reference */
        Py_ssize_t nitems = 1;
        if (p->is_list) {
            if (!PyList_Check(v) && !PyTuple_Check(v)) {
                PyObject *tn = PyType_GetName(Py_TYPE(v));
                if (tn != NULL) {
                    ERR(&e->c, EncodeError, -1, "field %U of %U must be a list, got %U", p->fname, t->name, tn);
                    Py_DECREF(tn);
                }
                Py_DECREF(v);
                return -1;
            }
            nitems = PySequence_Fast_GET_SIZE(v);
        }
        for (Py_ssize_t k = 0; k < nitems; k++) {
            PyObject *item;
            if (p->is_list) {
                if (k >= PySequence_Fast_GET_SIZE(seq))  /* the list shrank under us */
                    break;
                item = PySequence_Fast_GET_ITEM(seq, k);
            } else {
                item = seq;
            }
            Py_INCREF(item);
            int el = -1, key = p->key;
            if (p->kind == F_ELEMENT) {
                el = p->single;
                for (int b = 0; el < 0 && b < p->nbc; b++)
                    if (p->bc_key[b] == (PyObject *)Py_TYPE(item))
                        el = p->bc_el[b];
                for (int b = 0; el < 0 && b < p->nbc; b++) {
                    if (!PyType_Check(p->bc_key[b]))
                        continue;
                    int ok = PyObject_IsInstance(item, p->bc_key[b]);
                    if (ok < 0)
                        goto fail_item;
                    if (ok)
                        el = p->bc_el[b];
                }
                if (el < 0) {
                    if (p->not_held == NULL) {
                        PyErr_SetString(PyExc_AttributeError, "'NoneType' object has no attribute '__name__'");
                        goto fail_item;
                    }
                    PyObject *tn = PyType_GetName(Py_TYPE(item));
                    if (tn != NULL) {
                        ERR(&e->c, EncodeError, -1, "field %U of %U cannot hold a %U; allowed: %U", p->fname,
                            t->name, tn, p->not_held);
                        Py_DECREF(tn);
                    }
                    goto fail_item;
                }
                key = el;
            } else if (p->kind == F_ITEMS) {
                int ok = PyObject_IsInstance(item, ChoiceType);
                if (ok < 0)
                    goto fail_item;
                PyObject *eli = NULL;
                if (ok && PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2) {
                    eli = PyDict_GetItemWithError(p->items, PyTuple_GET_ITEM(item, 0));
                    if (eli == NULL && PyErr_Occurred())
                        goto fail_item;
                }
                if (eli == NULL) {
                    ERR(&e->c, EncodeError, -1, "items of %U must be Choice(element, value) with element one of %U",
                        t->name, p->not_held);
                    goto fail_item;
                }
                el = (int)PyLong_AsLong(eli);
                key = el;
                Py_SETREF(item, Py_NewRef(PyTuple_GET_ITEM(item, 1)));
            } else if (p->kind == F_ANY) {
                ERR(&e->c, EncodeError, -1, "wildcard content in %U.%U is not supported", t->name, p->fname);
                goto fail_item;
            }
            const State *st = &t->states[si];
            if (p->kind == F_VALUE && is_empty_text(item) && state_text(T, st) != NULL) {
                /* empty simple content: escape + second-level EE, as EXIficient writes it; the element ends */
                const DT *dt = &T->dts[p->dt];
                int rc = (e->w.validate && length_bad(dt, 0))
                             ? length_error(&e->c, ValidationError, -1, dt, NULL, dt->kind_name, 0)
                             : w_bits(&e->w, (uint32_t)st->nprods, st->width);
                if (rc == 0)
                    rc = w_bits(&e->w, 0, SIMPLE_SECOND_LEVEL_BITS);
                Py_DECREF(item);
                Py_DECREF(seq);
                return rc;
            }
            int ci = find_code(st, key);
            if (ci < 0 && el >= 0) {
                for (int w = 0; w < t->ntwins; w++) {
                    if (t->twins[w].el != el)
                        continue;
                    for (int j = 0; j < t->twins[w].n && ci < 0; j++) {
                        ci = find_code(st, t->twins[w].twins[j]);
                        if (ci >= 0)
                            el = t->twins[w].twins[j];
                    }
                    break;
                }
            }
            if (ci < 0) {
                if (el >= 0)
                    ERR(&e->c, EncodeError, -1, "<%U> is not allowed here in %U (after the fields before it); expected %U",
                        T->els[el].local, t->name, st->expected);
                else
                    ERR(&e->c, EncodeError, -1, "%U is not allowed here in %U (after the fields before it); expected %U",
                        p->fname, t->name, st->expected);
                goto fail_item;
            }
            const EncEntry *en = &st->enc[ci];
            const Prod *pr = &st->prods[en->code];
            if (w_bits(&e->w, (uint32_t)en->code, st->width) < 0)
                goto fail_item;
            int rc = el >= 0 ? enc_element(e, T, el, item) : enc_value(e, &T->dts[p->dt], item);
            if (rc < 0) {
                add_path(&e->c, p->fname);
                goto fail_item;
            }
            Py_DECREF(item);
            int nxt = pr->next;
            if (pr->flag) {
                if (pr->flag == LOOP_STEP) {
                    count++;
                    if (count == st->loop_len)
                        nxt = st->loop_exit;
                } else {
                    count = 0;
                }
            }
            if (nxt < 0) {
                PyErr_SetString(PyExc_SystemError, "EXI tables: production without next state");
                Py_DECREF(seq);
                return -1;
            }
            si = nxt;
            continue;
        fail_item:
            Py_DECREF(item);
            Py_DECREF(seq);
            return -1;
        }
        Py_DECREF(seq);
    }
    const State *st = &t->states[si];
    int ci = find_code(st, KEY_EE);
    if (ci < 0)
        return ERR(&e->c, EncodeError, -1, "%U is incomplete: expected %U", t->name, st->expected);
    return w_bits(&e->w, (uint32_t)st->enc[ci].code, st->width);
}

static PyObject *encode_root(const Tables *T, PyObject *obj, int ei, uint32_t code, int width, int end_code,
                             int validate)
{
    Enc e;
    memset(&e.c, 0, sizeof e.c);
    e.c.err_bit = -1;
    w_init(&e.w, validate);
    PyObject *r = NULL;
    if (w_bits(&e.w, HEADER, 8) < 0 || w_bits(&e.w, code, width) < 0)
        goto fail;
    if (enc_element(&e, T, ei, obj) < 0) {
        add_path(&e.c, T->els[ei].local);
        goto fail;
    }
    if (end_code >= 0 && w_bits(&e.w, (uint32_t)end_code, width) < 0)
        goto fail;
    r = w_getvalue(&e.w);
    goto out;
fail:
    raise_pending(&e.c);
out:
    ctx_clear(&e.c);
    w_free(&e.w);
    return r;
}

static PyObject *Tables_encode(Tables *T, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "encode(message, validate)");
        return NULL;
    }
    int validate = PyObject_IsTrue(args[1]);
    if (validate < 0)
        return NULL;
    PyObject *root = PyDict_GetItemWithError(T->roots, (PyObject *)Py_TYPE(args[0]));
    if (root == NULL) {
        if (PyErr_Occurred())
            return NULL;
        PyObject *tn = PyType_GetName(Py_TYPE(args[0]));
        if (tn != NULL) {
            PyObject *msg = PyUnicode_FromFormat("%U is not a message (global element) of schema set %U", tn, T->name);
            Py_DECREF(tn);
            if (msg != NULL) {
                PyErr_SetObject(SchemaError, msg);
                Py_DECREF(msg);
            }
        }
        return NULL;
    }
    long code = PyLong_AsLong(PyTuple_GET_ITEM(root, 0));
    long ei = PyLong_AsLong(PyTuple_GET_ITEM(root, 1));
    return encode_root(T, args[0], (int)ei, (uint32_t)code, T->doc_width, -1, validate);
}

/* encode_fragment(message, code, element, validate): exi/_c.py picks the element as codec.py does */
static PyObject *Tables_encode_fragment(Tables *T, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "encode_fragment(message, code, element, validate)");
        return NULL;
    }
    if (T->nfrag < 0) {
        PyErr_Format(SchemaError, "schema set %U has no fragment grammar", T->name);
        return NULL;
    }
    long code = PyLong_AsLong(args[1]);
    long ei = PyLong_AsLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    if (code < 0 || code >= T->nfrag || ei < 0 || ei >= T->nel) {
        PyErr_SetString(PyExc_ValueError, "fragment code or element out of range");
        return NULL;
    }
    int validate = PyObject_IsTrue(args[3]);
    if (validate < 0)
        return NULL;
    return encode_root(T, args[0], (int)ei, (uint32_t)code, T->frag_width, T->nfrag + 1, validate);
}

/* ---------------------------------------------------------------------------------------------------------
 * Loading the tables (from exi/_c.py's spec; indices are checked so a bad spec cannot crash)
 * --------------------------------------------------------------------------------------------------------- */
static int bad_spec(const char *what)
{
    if (!PyErr_Occurred())
        PyErr_Format(PyExc_ValueError, "EXI accelerator tables: bad %s", what);
    return -1;
}

static int get_int(PyObject *tup, Py_ssize_t i, int lo, int hi, int *out, const char *what)
{
    if (!PyTuple_Check(tup) || i >= PyTuple_GET_SIZE(tup))
        return bad_spec(what);
    long v = PyLong_AsLong(PyTuple_GET_ITEM(tup, i));
    if (v == -1 && PyErr_Occurred())
        return bad_spec(what);
    if (v < lo || v > hi)
        return bad_spec(what);
    *out = (int)v;
    return 0;
}

static PyObject *get_obj(PyObject *tup, Py_ssize_t i)
{
    if (!PyTuple_Check(tup) || i >= PyTuple_GET_SIZE(tup)) {
        bad_spec("tuple");
        return NULL;
    }
    return PyTuple_GET_ITEM(tup, i);
}

static PyObject *get_tuple(PyObject *tup, Py_ssize_t i, const char *what)
{
    PyObject *o = get_obj(tup, i);
    if (o == NULL || !PyTuple_Check(o)) {
        bad_spec(what);
        return NULL;
    }
    return o;
}

static int load_bound(PyObject *o, Bound *b)
{
    if (o == Py_None) {
        b->kind = B_NONE;
        return 0;
    }
    if (!PyLong_Check(o))
        return bad_spec("bound");
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    b->kind = overflow > 0 ? B_ABOVE : overflow < 0 ? B_BELOW : B_I64;
    b->v = v;
    return 0;
}

static int load_dt(DT *dt, PyObject *row)
{
    PyObject *o;
    int lo_len, hi_len;
    if (get_int(row, 0, 0, K_BASE64, &dt->kind, "datatype kind") < 0 ||
        get_int(row, 6, 0, MAX_WIDTH, &dt->nbits, "nbits") < 0 ||
        get_int(row, 7, 1, MAX_INT_OCTETS, &dt->max_octets, "max_octets") < 0 ||
        get_int(row, 4, -1, INT_MAX, &lo_len, "min length") < 0 ||
        get_int(row, 5, -1, INT_MAX, &hi_len, "max length") < 0)
        return -1;
    dt->min_len = lo_len;
    dt->max_len = hi_len;
    if ((dt->name = get_obj(row, 1)) == NULL || !PyUnicode_Check(dt->name))
        return bad_spec("datatype name");
    if ((dt->lo_obj = get_obj(row, 2)) == NULL || load_bound(dt->lo_obj, &dt->lo) < 0)
        return -1;
    if ((dt->hi_obj = get_obj(row, 3)) == NULL || load_bound(dt->hi_obj, &dt->hi) < 0)
        return -1;
    if ((dt->members = get_tuple(row, 8, "enum members")) == NULL)
        return -1;
    if ((o = get_obj(row, 9)) == NULL || !PyDict_Check(o))
        return bad_spec("enum index");
    dt->index = o;
    if ((dt->kind_name = get_obj(row, 10)) == NULL || !PyUnicode_Check(dt->kind_name))
        return bad_spec("kind name");
    if (dt->kind == K_NBIT && (dt->lo.kind != B_I64 || dt->hi.kind != B_I64))
        return bad_spec("n-bit bounds");
    if (dt->kind == K_ENUM && PyTuple_GET_SIZE(dt->members) > (1L << dt->nbits))
        return bad_spec("enum width");
    return 0;
}

static void *calloc_n(Py_ssize_t n, size_t size)
{
    void *p = PyMem_Calloc(n > 0 ? (size_t)n : 1, size);
    if (p == NULL)
        PyErr_NoMemory();
    return p;
}

static int load_type(Tables *T, TI *t, PyObject *row)
{
    PyObject *states, *plan, *twins;
    if ((t->cls = get_obj(row, 0)) == NULL || (t->name = get_obj(row, 1)) == NULL || !PyUnicode_Check(t->name))
        return bad_spec("type");
    if (get_int(row, 2, 0, 1, &t->abstract, "abstract") < 0 || get_int(row, 3, 0, 4096, &t->nfields, "nfields") < 0)
        return -1;
    if ((states = get_tuple(row, 4, "states")) == NULL || (plan = get_tuple(row, 5, "plan")) == NULL ||
        (twins = get_tuple(row, 6, "twins")) == NULL)
        return -1;
    t->nstates = (int)PyTuple_GET_SIZE(states);
    if ((t->states = calloc_n(t->nstates, sizeof(State))) == NULL)
        return -1;
    for (int i = 0; i < t->nstates; i++) {
        PyObject *s = PyTuple_GET_ITEM(states, i), *prods, *enc;
        State *st = &t->states[i];
        if (get_int(s, 0, 0, MAX_WIDTH, &st->width, "width") < 0 ||
            get_int(s, 1, 0, INT_MAX, &st->loop_len, "loop length") < 0 ||
            get_int(s, 2, -1, t->nstates - 1, &st->loop_exit, "loop exit") < 0)
            return -1;
        if ((st->expected = get_obj(s, 3)) == NULL || !PyUnicode_Check(st->expected))
            return bad_spec("expected");
        if ((prods = get_tuple(s, 4, "prods")) == NULL || (enc = get_tuple(s, 5, "enc")) == NULL)
            return -1;
        st->nprods = (int)PyTuple_GET_SIZE(prods);
        if (st->nprods > (1L << st->width))
            return bad_spec("production count");
        if ((st->prods = calloc_n(st->nprods, sizeof(Prod))) == NULL)
            return -1;
        for (int j = 0; j < st->nprods; j++) {
            PyObject *p = PyTuple_GET_ITEM(prods, j);
            Prod *pr = &st->prods[j];
            if (get_int(p, 0, 0, EV_UNSUPPORTED, &pr->ev, "event") < 0 ||
                get_int(p, 1, 0, LOOP_ENTER, &pr->flag, "loop flag") < 0 ||
                get_int(p, 2, -1, t->nstates - 1, &pr->next, "next") < 0 ||
                get_int(p, 3, -1, T->nel - 1, &pr->el, "element") < 0 ||
                get_int(p, 4, -1, t->nfields - 1, &pr->field, "field") < 0 ||
                get_int(p, 5, 0, 2, &pr->is_list, "is_list") < 0 ||
                get_int(p, 6, -1, T->ndt - 1, &pr->dt, "datatype") < 0)
                return -1;
            if (pr->ev != EV_EE && pr->ev != EV_UNSUPPORTED && pr->next < 0)
                return bad_spec("production without next state");
            if (pr->flag == LOOP_STEP && st->loop_exit < 0)
                return bad_spec("loop without exit");
            if (pr->ev == EV_SE_QNAME && (pr->el < 0 || pr->field < 0))
                return bad_spec("SE production");
            if ((pr->ev == EV_AT_QNAME || pr->ev == EV_CH) && (pr->dt < 0 || pr->field < 0))
                return bad_spec("value production");
        }
        st->nenc = (int)PyTuple_GET_SIZE(enc);
        if ((st->enc = calloc_n(st->nenc, sizeof(EncEntry))) == NULL)
            return -1;
        for (int j = 0; j < st->nenc; j++) {
            PyObject *p = PyTuple_GET_ITEM(enc, j);
            if (get_int(p, 0, INT_MIN, T->nel - 1, &st->enc[j].key, "key") < 0 ||
                get_int(p, 1, 0, st->nprods - 1, &st->enc[j].code, "code") < 0)
                return -1;
        }
    }
    if (t->nstates == 0)
        return bad_spec("type without states");
    t->nplan = (int)PyTuple_GET_SIZE(plan);
    if ((t->plan = calloc_n(t->nplan, sizeof(Plan))) == NULL)
        return -1;
    for (int i = 0; i < t->nplan; i++) {
        PyObject *p = PyTuple_GET_ITEM(plan, i), *bc;
        Plan *pl = &t->plan[i];
        if (get_int(p, 0, F_ATTRIBUTE, F_ANY, &pl->kind, "plan kind") < 0 ||
            get_int(p, 1, 0, 1, &pl->is_list, "plan list") < 0 ||
            get_int(p, 2, -1, t->nfields - 1, &pl->field, "plan field") < 0 ||
            get_int(p, 3, -1, T->nel - 1, &pl->single, "plan single") < 0 ||
            get_int(p, 5, -1, T->ndt - 1, &pl->dt, "plan datatype") < 0 ||
            get_int(p, 6, INT_MIN, T->nel - 1, &pl->key, "plan key") < 0)
            return -1;
        if ((pl->fname = get_obj(p, 7)) == NULL || !PyUnicode_Check(pl->fname))
            return bad_spec("plan name");
        if ((bc = get_tuple(p, 4, "by_class")) == NULL)
            return -1;
        pl->nbc = (int)PyTuple_GET_SIZE(bc);
        if ((pl->bc_key = calloc_n(pl->nbc, sizeof(PyObject *))) == NULL ||
            (pl->bc_el = calloc_n(pl->nbc, sizeof(int))) == NULL)
            return -1;
        for (int j = 0; j < pl->nbc; j++) {
            PyObject *kv = PyTuple_GET_ITEM(bc, j);
            if ((pl->bc_key[j] = get_obj(kv, 0)) == NULL || get_int(kv, 1, 0, T->nel - 1, &pl->bc_el[j], "by_class") < 0)
                return -1;
        }
        PyObject *items = get_obj(p, 8), *msg = get_obj(p, 9);
        if (items == NULL || msg == NULL)
            return -1;
        pl->items = items == Py_None ? NULL : items;
        pl->not_held = msg == Py_None ? NULL : msg;
        if (pl->kind == F_ITEMS && (pl->items == NULL || !PyDict_Check(pl->items) || pl->not_held == NULL))
            return bad_spec("items plan");
        if ((pl->kind == F_ATTRIBUTE || pl->kind == F_VALUE) && pl->dt < 0)
            return bad_spec("value plan");
        Py_ssize_t n;
        PyObject *key, *val;
        for (n = 0; pl->items != NULL && PyDict_Next(pl->items, &n, &key, &val);) {
            long ei = PyLong_AsLong(val);
            if (ei < 0 || ei >= T->nel)
                return bad_spec("items element");
        }
    }
    t->ntwins = (int)PyTuple_GET_SIZE(twins);
    if ((t->twins = calloc_n(t->ntwins, sizeof(Twin))) == NULL)
        return -1;
    for (int i = 0; i < t->ntwins; i++) {
        PyObject *tw = PyTuple_GET_ITEM(twins, i), *lst;
        if (get_int(tw, 0, 0, T->nel - 1, &t->twins[i].el, "twin") < 0 || (lst = get_tuple(tw, 1, "twins")) == NULL)
            return -1;
        t->twins[i].n = (int)PyTuple_GET_SIZE(lst);
        if ((t->twins[i].twins = calloc_n(t->twins[i].n, sizeof(int))) == NULL)
            return -1;
        for (int j = 0; j < t->twins[i].n; j++)
            if (get_int(lst, j, 0, T->nel - 1, &t->twins[i].twins[j], "twin") < 0)
                return -1;
    }
    return 0;
}

/* (fast, fields) of one complex element: fields are (name, default kind, default object) in type order */
static int load_layout(Layout *lay, PyObject *cls, PyObject *row, int nfields)
{
    PyObject *fields;
    lay->cls = cls;
    if (get_int(row, 0, 0, 1, &lay->fast, "fast") < 0 || (fields = get_tuple(row, 1, "fields")) == NULL)
        return -1;
    if (PyTuple_GET_SIZE(fields) != nfields)
        return bad_spec("layout size");
    if (lay->fast && !PyType_Check(cls))
        return bad_spec("fast class");
    lay->nfields = nfields;
    if ((lay->fields = calloc_n(nfields, sizeof(Field))) == NULL)
        return -1;
    for (int i = 0; i < nfields; i++) {
        PyObject *f = PyTuple_GET_ITEM(fields, i);
        Field *fd = &lay->fields[i];
        if ((fd->name = get_obj(f, 0)) == NULL || !PyUnicode_Check(fd->name) ||
            get_int(f, 1, D_REQUIRED, D_FACTORY, &fd->dflt, "default") < 0 || (fd->dflt_obj = get_obj(f, 2)) == NULL)
            return bad_spec("field");
        fd->offset = -1;
        if (lay->fast) {
            /* the slot's member descriptor gives its offset in the instance */
            PyObject *d = PyObject_GetAttr(cls, fd->name);
            if (d == NULL)
                return -1;
            if (Py_IS_TYPE(d, &PyMemberDescr_Type)) {
                PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
                if (m->type == T_OBJECT_EX && !(m->flags & READONLY) && m->offset > 0)
                    fd->offset = m->offset;
            }
            Py_DECREF(d);
            if (fd->offset < 0)
                lay->fast = 0;
        }
    }
    return 0;
}

static int load_ints(PyObject *tup, int lo, int hi, int **out, int *n, const char *what)
{
    *n = (int)PyTuple_GET_SIZE(tup);
    if ((*out = calloc_n(*n, sizeof(int))) == NULL)
        return -1;
    for (int i = 0; i < *n; i++)
        if (get_int(tup, i, lo, hi, &(*out)[i], what) < 0)
            return -1;
    return 0;
}

static int Tables_load(Tables *T, PyObject *spec)
{
    PyObject *dts, *els, *types, *doc, *frag, *roots;
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 10)
        return bad_spec("spec");
    T->name = PyTuple_GET_ITEM(spec, 0);
    if (!PyUnicode_Check(T->name))
        return bad_spec("name");
    if ((dts = get_tuple(spec, 1, "datatypes")) == NULL || (els = get_tuple(spec, 2, "elements")) == NULL ||
        (types = get_tuple(spec, 3, "types")) == NULL || (doc = get_tuple(spec, 4, "document")) == NULL)
        return -1;
    T->ndt = (int)PyTuple_GET_SIZE(dts);
    T->nel = (int)PyTuple_GET_SIZE(els);
    T->ntypes = (int)PyTuple_GET_SIZE(types);
    if ((T->dts = calloc_n(T->ndt, sizeof(DT))) == NULL || (T->els = calloc_n(T->nel, sizeof(EL))) == NULL ||
        (T->types = calloc_n(T->ntypes, sizeof(TI))) == NULL)
        return -1;
    for (int i = 0; i < T->ndt; i++)
        if (load_dt(&T->dts[i], PyTuple_GET_ITEM(dts, i)) < 0)
            return -1;
    for (int i = 0; i < T->nel; i++) {
        PyObject *row = PyTuple_GET_ITEM(els, i);
        EL *el = &T->els[i];
        if (get_int(row, 0, -1, T->ntypes - 1, &el->type, "element type") < 0 ||
            get_int(row, 1, -1, T->ndt - 1, &el->dt, "element datatype") < 0 ||
            get_int(row, 2, 0, 1, &el->abstract, "element abstract") < 0)
            return -1;
        if ((el->cls = get_obj(row, 3)) == NULL || (el->local = get_obj(row, 4)) == NULL ||
            (el->cls_name = get_obj(row, 5)) == NULL || !PyUnicode_Check(el->local) || !PyUnicode_Check(el->cls_name))
            return bad_spec("element");
        if ((el->type < 0) == (el->dt < 0))
            return bad_spec("element content");
    }
    for (int i = 0; i < T->ntypes; i++)
        if (load_type(T, &T->types[i], PyTuple_GET_ITEM(types, i)) < 0)
            return -1;
    for (int i = 0; i < T->nel; i++) {
        EL *el = &T->els[i];
        PyObject *row = get_obj(PyTuple_GET_ITEM(els, i), 6);
        if (row == NULL)
            return -1;
        if (el->type >= 0 && load_layout(&el->lay, el->cls, row, T->types[el->type].nfields) < 0)
            return -1;
    }
    if (load_ints(doc, 0, T->nel - 1, &T->doc, &T->ndoc, "document") < 0 ||
        get_int(spec, 5, 0, MAX_WIDTH, &T->doc_width, "document width") < 0)
        return -1;
    if (T->ndoc > (1L << T->doc_width))
        return bad_spec("document width");
    if ((roots = get_obj(spec, 6)) == NULL || !PyDict_Check(roots))
        return bad_spec("roots");
    T->roots = roots;
    Py_ssize_t n = 0;
    PyObject *k, *v;
    while (PyDict_Next(roots, &n, &k, &v)) {
        int code, ei;
        if (get_int(v, 0, 0, T->ndoc - 1, &code, "root code") < 0 || get_int(v, 1, 0, T->nel - 1, &ei, "root") < 0)
            return -1;
    }
    if ((frag = get_obj(spec, 7)) == NULL)
        return -1;
    if (frag == Py_None) {
        T->nfrag = -1;
    } else {
        if (!PyTuple_Check(frag) || load_ints(frag, -1, T->nel - 1, &T->frag, &T->nfrag, "fragment") < 0)
            return bad_spec("fragment");
        if (get_int(spec, 8, 1, MAX_WIDTH, &T->frag_width, "fragment width") < 0)
            return -1;
        if (T->nfrag + 1 >= (1L << T->frag_width))
            return bad_spec("fragment width");
        if ((T->frag_locals = get_tuple(spec, 9, "fragment names")) == NULL ||
            PyTuple_GET_SIZE(T->frag_locals) != T->nfrag)
            return bad_spec("fragment names");
    }
    return 0;
}

static void Tables_free_arrays(Tables *T)
{
    for (int i = 0; T->types != NULL && i < T->ntypes; i++) {
        TI *t = &T->types[i];
        for (int j = 0; t->states != NULL && j < t->nstates; j++) {
            PyMem_Free(t->states[j].prods);
            PyMem_Free(t->states[j].enc);
        }
        for (int j = 0; t->plan != NULL && j < t->nplan; j++) {
            PyMem_Free(t->plan[j].bc_key);
            PyMem_Free(t->plan[j].bc_el);
        }
        for (int j = 0; t->twins != NULL && j < t->ntwins; j++)
            PyMem_Free(t->twins[j].twins);
        PyMem_Free(t->states);
        PyMem_Free(t->plan);
        PyMem_Free(t->twins);
    }
    for (int i = 0; T->els != NULL && i < T->nel; i++)
        PyMem_Free(T->els[i].lay.fields);
    PyMem_Free(T->dts);
    PyMem_Free(T->els);
    PyMem_Free(T->types);
    PyMem_Free(T->doc);
    PyMem_Free(T->frag);
    T->dts = NULL;
    T->els = NULL;
    T->types = NULL;
    T->doc = NULL;
    T->frag = NULL;
}

static PyObject *Tables_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *spec;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) > 0) {
        PyErr_SetString(PyExc_TypeError, "Tables(spec) takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!:Tables", &PyTuple_Type, &spec))
        return NULL;
    if (DecodeError == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "exi._speedups.configure() has not been called");
        return NULL;
    }
    Tables *T = (Tables *)type->tp_alloc(type, 0);
    if (T == NULL)
        return NULL;
    T->spec = Py_NewRef(spec);  /* every borrowed table object lives inside spec */
    if (Tables_load(T, spec) < 0) {
        Py_DECREF(T);
        return NULL;
    }
    return (PyObject *)T;
}

static int Tables_traverse(Tables *T, visitproc visit, void *arg)
{
    Py_VISIT(T->spec);
    return 0;
}

static int Tables_clear(Tables *T)
{
    Tables_free_arrays(T);
    Py_CLEAR(T->spec);
    return 0;
}

static void Tables_dealloc(Tables *T)
{
    PyObject_GC_UnTrack(T);
    Tables_clear(T);
    Py_TYPE(T)->tp_free((PyObject *)T);
}

static PyMethodDef Tables_methods[] = {
    {"decode", (PyCFunction)(void (*)(void))Tables_decode, METH_FASTCALL,
     "decode(data, validate) -> message: one EXI document"},
    {"decode_fragment", (PyCFunction)(void (*)(void))Tables_decode_fragment, METH_FASTCALL,
     "decode_fragment(data, validate) -> element: one EXI fragment"},
    {"encode", (PyCFunction)(void (*)(void))Tables_encode, METH_FASTCALL,
     "encode(message, validate) -> bytes: one EXI document, header included"},
    {"encode_fragment", (PyCFunction)(void (*)(void))Tables_encode_fragment, METH_FASTCALL,
     "encode_fragment(message, code, element, validate) -> bytes"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Tables_members[] = {
    {"name", T_OBJECT, offsetof(Tables, name), READONLY, "schema set name"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject TablesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "exi._speedups.Tables",
    .tp_basicsize = sizeof(Tables),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The grammar tables of one schema set, loaded from exi/_c.py's spec.",
    .tp_new = Tables_new,
    .tp_dealloc = (destructor)Tables_dealloc,
    .tp_traverse = (traverseproc)Tables_traverse,
    .tp_clear = (inquiry)Tables_clear,
    .tp_methods = Tables_methods,
    .tp_members = Tables_members,
};

static PyObject *configure(PyObject *self, PyObject *args)
{
    PyObject *d, *e, *v, *s, *ch;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOO:configure", &d, &e, &v, &s, &ch))
        return NULL;
    Py_XSETREF(DecodeError, Py_NewRef(d));
    Py_XSETREF(EncodeError, Py_NewRef(e));
    Py_XSETREF(ValidationError, Py_NewRef(v));
    Py_XSETREF(SchemaError, Py_NewRef(s));
    Py_XSETREF(ChoiceType, Py_NewRef(ch));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(ExiDecodeError, ExiEncodeError, ExiValidationError, ExiSchemaError, Choice)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "exi._speedups", "C accelerator of the EXI codec (see exi/_c.py).", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    if (PyType_Ready(&TablesType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Tables", (PyObject *)&TablesType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
