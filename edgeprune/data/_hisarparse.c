/*
 * The compiled HisarMod2019.1 row parser (optional: edgeprune/data/hisar.py falls back to numpy without it).
 *
 * parse_rows(rows, out, length) -> int
 *   rows:   a list of bytes, one CSV row each: `length` MATLAB-style complex numbers ("a+bi", "a-bi", "bi", "a";
 *           i, I, j or J as the imaginary unit), blanks (space, \t, \r, \n, \v, \f) anywhere, as the numpy path
 *           deletes them before parsing.
 *   out:    a writable C-contiguous float32 buffer of len(rows) * 2 * length values: row r's real parts at
 *           out[r, 0, :] and imaginary parts at out[r, 1, :] (a float64 buffer gets the doubles themselves).
 *   return: -1 when every row was parsed, else the index of the first row it does not take (rows before it are
 *           written). It takes only the plain grammar
 *               field := real | real UNIT | real ('+' | '-') num UNIT
 *               real  := ['+' | '-'] num
 *               num   := digits ['.' [digits]] | '.' digits, then optionally ('e' | 'E') ['+' | '-'] digits
 *           with exactly `length` fields; anything else (NaN, Inf, empty fields, parentheses, a wrong count, ...)
 *           is left to the Python reader, which parses the whole chunk as before and names a bad row.
 *
 * Every number is parsed to double with correct rounding, then cast to float32 (as numpy casts float64): a
 * mantissa of at most 2^53 with a decimal exponent within +-22 is exact in double, so one multiplication or
 * division by an exact power of ten rounds correctly (Clinger's fast path; x86-64 and other SSE2/IEEE targets
 * evaluate double arithmetic in double). Any other number goes to PyOS_string_to_double, the function numpy's
 * text reader and Python's complex() call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <stdint.h>
#include <string.h>

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "the fast path needs double arithmetic evaluated in double (FLT_EVAL_METHOD 0)"
#endif

#define MAX_TOKEN 400

static unsigned char BLANK[256];
static unsigned char UNIT[256];
static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

#define IS_DIGIT(c) ((unsigned char)((c) - '0') < 10)

/* The value of eight ASCII digits in the little-endian word v (the well-known SWAR steps). */
static inline uint64_t
eight_value(uint64_t v)
{
    const uint64_t mask = 0x000000FF000000FFULL, mul1 = 100 + (1000000ULL << 32), mul2 = 1 + (10000ULL << 32);
    v -= 0x3030303030303030ULL;
    v = (v * 10) + (v >> 8);
    return (((v & mask) * mul1) + (((v >> 16) & mask) * mul2)) >> 32;
}

static inline uint64_t
load8(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if !PY_LITTLE_ENDIAN
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* How many of the eight bytes of v (first byte lowest) are ASCII digits before the first other byte: a byte
 * below '0' borrows, one above '9' carries into its high bit; what happens after the first other byte does not
 * matter. */
static inline int
leading_digits(uint64_t v)
{
    uint64_t other = ((v + 0x4646464646464646ULL) | (v - 0x3030303030303030ULL)) & 0x8080808080808080ULL;
    return other ? __builtin_ctzll(other) >> 3 : 8;
}

/* The value of the first k (1..8) digit bytes of v. */
static inline uint64_t
digits_value(uint64_t v, int k)
{
    v <<= 8 * (8 - k);                                    /* the k digits to the top, zero bytes below */
    v |= 0x3030303030303030ULL >> (8 * k - 1) >> 1;       /* those bytes made '0' */
    return eight_value(v);
}

static const uint64_t IPOW10[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};

/* One number (`num` above, no sign) at *pp; `neg` is its sign. 0 on success, -1 when the text is not `num`.
 * The text ends before `limit` with a byte that is no digit, '.', 'e' or 'E' (the NUL of a bytes object): the
 * scans stop there; eight-byte loads stay below `limit`. With at most 19 digits m holds them exactly (10^19 <
 * 2^64); with more it may wrap around, and then it is not used. */
static int
parse_num(const char **pp, const char *limit, int neg, double *out)
{
    const char *p = *pp, *start = p, *q = p;
    uint64_t m = 0;
    Py_ssize_t digits, exp10 = 0;
    int slow;

    for (; IS_DIGIT(*p); p++) m = m * 10 + (uint64_t)(*p - '0');
    digits = p - q;
    if (*p == '.') {
        q = ++p;
        if (p + 16 <= limit) {
            uint64_t v = load8(p);
            int k = leading_digits(v);
            if (k == 8) {
                m = m * 100000000ULL + eight_value(v);
                p += 8;
                v = load8(p);
                k = leading_digits(v);
            }
            if (k) m = m * IPOW10[k] + digits_value(v, k);
            p += k;
        }
        for (; IS_DIGIT(*p); p++) m = m * 10 + (uint64_t)(*p - '0');
        exp10 = -(p - q);
        digits += p - q;
    }
    if (!digits) return -1;
    if ((*p | 0x20) == 'e') {
        Py_ssize_t e = 0;
        int eneg = 0;
        p++;
        if (*p == '+' || *p == '-') eneg = (*p++ == '-');
        if (!IS_DIGIT(*p)) return -1;
        for (; IS_DIGIT(*p); p++) {
            if (e < 100000) e = e * 10 + (*p - '0');
        }
        exp10 += eneg ? -e : e;
    }
    slow = digits > 19;
    *pp = p;
    if (!slow && m == 0) {
        *out = neg ? -0.0 : 0.0;
        return 0;
    }
    if (!slow && m <= ((uint64_t)1 << 53) && exp10 >= -22 && exp10 <= 22) {
        double d = (double)m;
        uint64_t bits;
        d = exp10 >= 0 ? d * POW10[exp10] : d / POW10[-exp10];
        memcpy(&bits, &d, 8);
        bits |= (uint64_t)neg << 63; /* the sign without a branch (d >= 0 here) */
        memcpy(out, &bits, 8);
        return 0;
    }
    {
        char buf[MAX_TOKEN + 2], *stop;
        size_t n = (size_t)(p - start);
        double d;
        if (n > MAX_TOKEN) return -1;
        buf[0] = neg ? '-' : '+';
        memcpy(buf + 1, start, n);
        buf[n + 1] = '\0';
        d = PyOS_string_to_double(buf, &stop, NULL);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
        if (stop != buf + n + 1) return -1;
        *out = d;
        return 0;
    }
}

/* One row of exactly `length` fields into re[0..length) and im[0..length); 0 on success, -1 otherwise.
 * limit: as for parse_num (the byte at `end` or after it, up to limit, ends every scan). */
static int
parse_row(const char *p, const char *end, const char *limit, Py_ssize_t length, char *row, int f64)
{
    Py_ssize_t k;
    while (end > p && BLANK[(unsigned char)end[-1]]) end--;
    for (k = 0; k < length; k++) {
        double a, b = 0.0;
        int neg = *p == '-';
        p += neg | (*p == '+');
        if (parse_num(&p, limit, neg, &a) < 0) return -1;
        if (UNIT[(unsigned char)*p]) { /* "bi": a pure imaginary number */
            b = a;
            a = 0.0;
            p++;
        }
        else if (*p == '+' || *p == '-') {
            neg = (*p++ == '-');
            if (parse_num(&p, limit, neg, &b) < 0) return -1;
            if (!UNIT[(unsigned char)*p]) return -1;
            p++;
        }
        if (p > end) return -1;
        if (f64) { /* float64 out (the tests compare the doubles themselves) */
            ((double *)row)[k] = a;
            ((double *)row)[length + k] = b;
        }
        else {
            ((float *)row)[k] = (float)a;
            ((float *)row)[length + k] = (float)b;
        }
        if (k + 1 < length) {
            if (*p != ',' || p >= end) return -1;
            p++;
        }
    }
    return p == end ? 0 : -1;
}

/* The row without its blanks, into buf (size at least end - p); returns the new end. */
static char *
squeeze(const char *p, const char *end, char *buf)
{
    char *d = buf;
    for (; p < end; p++) {
        *d = *p;
        d += !BLANK[(unsigned char)*p];
    }
    return d;
}

static int
has_blank(const char *p, const char *end)
{
    for (; p < end; p++)
        if (BLANK[(unsigned char)*p]) return 1;
    return 0;
}

static PyObject *
parse_rows(PyObject *self, PyObject *args)
{
    PyObject *rows, *outobj;
    Py_ssize_t length, n, r, failed = -1;
    Py_buffer view;
    char *scratch = NULL;
    Py_ssize_t scratch_size = 0;
    const char *fmt;
    int f64;

    (void)self;
    if (!PyArg_ParseTuple(args, "O!On:parse_rows", &PyList_Type, &rows, &outobj, &length)) return NULL;
    if (length < 1) {
        PyErr_SetString(PyExc_ValueError, "length must be >= 1");
        return NULL;
    }
    if (PyObject_GetBuffer(outobj, &view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT) < 0) return NULL;
    n = PyList_GET_SIZE(rows);
    fmt = view.format == NULL ? "" : view.format;
    if (fmt[0] == '=' || fmt[0] == (PY_LITTLE_ENDIAN ? '<' : '>')) fmt++;
    f64 = fmt[0] == 'd' && fmt[1] == '\0' && view.itemsize == 8;
    if (!(f64 || (fmt[0] == 'f' && fmt[1] == '\0' && view.itemsize == 4)) || n > PY_SSIZE_T_MAX / 16 / length ||
        view.len != n * 2 * length * view.itemsize) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError,
                        "out must be a float32 (or float64) buffer of len(rows) * 2 * length values");
        return NULL;
    }
    for (r = 0; r < n && failed < 0; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        const char *p, *end;
        char *sq_end;
        char *out = (char *)view.buf + r * 2 * length * view.itemsize;
        if (!PyBytes_Check(row)) {
            failed = r;
            break;
        }
        p = PyBytes_AS_STRING(row);
        end = p + PyBytes_GET_SIZE(row);
        if (parse_row(p, end, end + 1, length, out, f64) == 0) continue; /* end + 1: after the bytes' NUL */
        if (!has_blank(p, end)) {
            failed = r;
            break;
        }
        if (scratch_size < end - p + 1) { /* blanks inside: parse the row with its blanks deleted */
            PyMem_Free(scratch);
            scratch_size = end - p + 1;
            scratch = PyMem_Malloc((size_t)scratch_size);
            if (scratch == NULL) {
                PyBuffer_Release(&view);
                return PyErr_NoMemory();
            }
        }
        sq_end = squeeze(p, end, scratch);
        *sq_end = '\0';
        if (parse_row(scratch, sq_end, sq_end + 1, length, out, f64) != 0) failed = r;
    }
    PyMem_Free(scratch);
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(failed);
}

static PyMethodDef methods[] = {
    {"parse_rows", parse_rows, METH_VARARGS,
     "parse_rows(rows, out, length) -> -1, or the index of the first row left to the Python reader"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hisarparse",
                                    "The compiled HisarMod2019.1 CSV row parser.", -1, methods,
                                    NULL, NULL, NULL, NULL};

static void
init_tables(void)
{
    const char *blanks = " \t\r\n\v\f", *units = "iIjJ";
    for (; *blanks; blanks++) BLANK[(unsigned char)*blanks] = 1;
    for (; *units; units++) UNIT[(unsigned char)*units] = 1;
}

PyMODINIT_FUNC
PyInit__hisarparse(void)
{
    init_tables();
    return PyModule_Create(&module);
}
