/* The Maglev ring fill loop (Eisenbud et al., NSDI 2016, section 3.4), for lb/control/maglev.py.
 *
 * fill(order, offsets, skips, quotas, ring) -> None
 *
 * Every argument is a buffer of C unsigned ints (array.array("I"), 4 bytes each):
 *   offsets[i], skips[i]  member i's permutation: slot j of it is (offsets[i] + j * skips[i]) % M
 *   quotas[i]             how many slots member i claims; the quotas sum to M
 *   order                 the turn order, a permutation of 0..n-1
 *   ring                  M slots, written in place: ring[s] = the member index owning slot s
 * Members take turns in `order`; each turn a member claims the next slot of its permutation that
 * nobody holds yet; a member that holds `quotas[i]` slots stops taking turns. The ring is full
 * when every member has reached its quota.
 *
 * The Python wrapper chooses the inputs; this file only trusts what it checks: every index it
 * writes through is checked first, and a permutation that does not cover the ring (a skip that
 * shares a factor with M, so M is not prime) raises ValueError instead of looping forever.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Marks a slot nobody has claimed yet; member indexes are < n <= M < 2^32 - 1. */
#define EMPTY UINT32_MAX

/* Gets a read (or write) view of a 1-D buffer of 4-byte unsigned ints; 0 on success. */
static int get_u32_view(PyObject *obj, Py_buffer *view, int writable, const char *name)
{
    int flags = PyBUF_FORMAT | PyBUF_ND | (writable ? PyBUF_WRITABLE : 0);

    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->itemsize != 4 || view->ndim != 1 || view->format == NULL ||
        (strcmp(view->format, "I") != 0 && strcmp(view->format, "=I") != 0)) {
        PyErr_Format(PyExc_TypeError, "%s must be an array.array('I') of 4-byte items", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Checks the inputs so that the loop below can index without further checks; 0 if valid. */
static int check_inputs(const uint32_t *order, const uint32_t *offsets, const uint32_t *skips,
                        const uint32_t *quotas, Py_ssize_t n, Py_ssize_t m, uint8_t *seen)
{
    uint64_t quota_sum = 0;

    if (m < 2 || m >= (Py_ssize_t)EMPTY) {
        PyErr_Format(PyExc_ValueError, "ring length must be in [2, 2^32 - 1), got %zd", m);
        return -1;
    }
    if (n < 1 || n > m) {
        PyErr_Format(PyExc_ValueError, "need 1 <= members <= ring length, got %zd members", n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (offsets[i] >= m || skips[i] < 1 || skips[i] >= m) {
            PyErr_Format(PyExc_ValueError,
                         "member %zd: need offset < M and 1 <= skip < M (M=%zd), got %u, %u",
                         i, m, offsets[i], skips[i]);
            return -1;
        }
        if (order[i] >= n || seen[order[i]]) {
            PyErr_SetString(PyExc_ValueError, "order must be a permutation of the member indexes");
            return -1;
        }
        seen[order[i]] = 1;
        quota_sum += quotas[i];
    }
    if (quota_sum != (uint64_t)m) {
        PyErr_Format(PyExc_ValueError, "quotas must sum to the ring length %zd, got %llu",
                     m, (unsigned long long)quota_sum);
        return -1;
    }
    return 0;
}

/* The turn-taking loop. `active` starts as a copy of `order` and is compacted each round to the
 * members still below quota, so members that are done cost nothing in later rounds. Returns the
 * member whose permutation ran out (M not prime), or -1 when the ring is full. */
static Py_ssize_t fill_ring(const uint32_t *order, const uint32_t *offsets, const uint32_t *skips,
                            const uint32_t *quotas, Py_ssize_t n, Py_ssize_t m, uint32_t *ring,
                            uint32_t *active, uint32_t *next, uint32_t *steps, uint32_t *taken)
{
    Py_ssize_t n_active = 0;

    for (Py_ssize_t s = 0; s < m; s++)
        ring[s] = EMPTY;
    for (Py_ssize_t k = 0; k < n; k++) {
        uint32_t i = order[k];
        next[i] = offsets[i]; /* slot j = 0 of member i's permutation */
        steps[i] = 0;         /* how many permutation entries member i has consumed */
        taken[i] = 0;
        if (quotas[i] > 0)
            active[n_active++] = i;
    }
    while (n_active > 0) {
        Py_ssize_t kept = 0;
        for (Py_ssize_t k = 0; k < n_active; k++) {
            uint32_t i = active[k];
            uint64_t slot = next[i]; /* 64-bit: slot + skip < 2M may not fit in 32 bits */
            /* Walk member i's permutation to its next unclaimed slot. Its M entries are
             * distinct when gcd(skip, M) == 1, so at most M steps in the whole fill. */
            while (ring[slot] != EMPTY) {
                if (++steps[i] >= m)
                    return (Py_ssize_t)i;
                slot += skips[i];
                if (slot >= (uint64_t)m)
                    slot -= (uint64_t)m;
            }
            ring[slot] = i;
            taken[i]++;
            steps[i]++;
            slot += skips[i];
            next[i] = (uint32_t)(slot >= (uint64_t)m ? slot - (uint64_t)m : slot);
            if (taken[i] < quotas[i])
                active[kept++] = i; /* order is kept, so turns stay deterministic */
        }
        n_active = kept;
    }
    return -1;
}

static PyObject *maglev_fill(PyObject *self, PyObject *args)
{
    PyObject *o_order, *o_offsets, *o_skips, *o_quotas, *o_ring;
    Py_buffer b_order, b_offsets, b_skips, b_quotas, b_ring;
    Py_buffer *views[] = {&b_order, &b_offsets, &b_skips, &b_quotas, &b_ring};
    int n_views = 0;
    uint32_t *scratch = NULL;
    uint8_t *seen = NULL;
    const uint32_t *order, *offsets, *skips, *quotas;
    Py_ssize_t n, m, stuck;
    PyObject *result = NULL;

    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOO:fill", &o_order, &o_offsets, &o_skips, &o_quotas, &o_ring))
        return NULL;
    if (get_u32_view(o_order, &b_order, 0, "order") < 0)
        goto out;
    n_views++;
    if (get_u32_view(o_offsets, &b_offsets, 0, "offsets") < 0)
        goto out;
    n_views++;
    if (get_u32_view(o_skips, &b_skips, 0, "skips") < 0)
        goto out;
    n_views++;
    if (get_u32_view(o_quotas, &b_quotas, 0, "quotas") < 0)
        goto out;
    n_views++;
    if (get_u32_view(o_ring, &b_ring, 1, "ring") < 0)
        goto out;
    n_views++;

    n = b_order.shape[0];
    m = b_ring.shape[0];
    if (b_offsets.shape[0] != n || b_skips.shape[0] != n || b_quotas.shape[0] != n) {
        PyErr_SetString(PyExc_ValueError, "order, offsets, skips and quotas must have one length");
        goto out;
    }
    seen = PyMem_Calloc(n > 0 ? (size_t)n : 1, 1);
    /* 8 arrays of n: private copies of order, offsets, skips, quotas, then active, next, steps,
     * taken. Checking and using copies means a caller that aliases `ring` with an input, or
     * another thread writing an input while the GIL is released, cannot steer an index. */
    scratch = PyMem_Malloc(8 * (n > 0 ? (size_t)n : 1) * sizeof(uint32_t));
    if (seen == NULL || scratch == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    memcpy(scratch, b_order.buf, (size_t)n * sizeof(uint32_t));
    memcpy(scratch + n, b_offsets.buf, (size_t)n * sizeof(uint32_t));
    memcpy(scratch + 2 * n, b_skips.buf, (size_t)n * sizeof(uint32_t));
    memcpy(scratch + 3 * n, b_quotas.buf, (size_t)n * sizeof(uint32_t));
    order = scratch;
    offsets = scratch + n;
    skips = scratch + 2 * n;
    quotas = scratch + 3 * n;
    if (check_inputs(order, offsets, skips, quotas, n, m, seen) < 0)
        goto out;

    /* `ring` stays exported (so it cannot be resized) until released below, and the loop reads
     * only the private copies and ring slots < M, so other threads may run meanwhile. */
    Py_BEGIN_ALLOW_THREADS
    stuck = fill_ring(order, offsets, skips, quotas, n, m, b_ring.buf,
                      scratch + 4 * n, scratch + 5 * n, scratch + 6 * n, scratch + 7 * n);
    Py_END_ALLOW_THREADS
    if (stuck >= 0) {
        PyErr_Format(PyExc_ValueError,
                     "member %zd's permutation does not cover the ring: skip %u shares a factor "
                     "with M=%zd (M must be prime)", stuck, skips[stuck], m);
        goto out;
    }
    result = Py_NewRef(Py_None);
out:
    PyMem_Free(scratch);
    PyMem_Free(seen);
    while (n_views > 0)
        PyBuffer_Release(views[--n_views]);
    return result;
}

static PyMethodDef maglev_methods[] = {
    {"fill", maglev_fill, METH_VARARGS,
     "fill(order, offsets, skips, quotas, ring) -> None\n\n"
     "Fill `ring` (array('I') of M slots) by Maglev turn-taking; each member stops at its quota."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef maglev_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lb.control._maglev",
    .m_doc = "The Maglev ring fill loop in C; use lb.control.maglev.build_ring.",
    .m_size = 0,
    .m_methods = maglev_methods,
};

PyMODINIT_FUNC PyInit__maglev(void)
{
    return PyModule_Create(&maglev_module);
}
