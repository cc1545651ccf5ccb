/* Ring writes into the mmapped `rings` map, for lb/xdp/maps.py (Dataplane.write_ring).
 *
 * apply(ring, ids, dest) -> slots written
 *
 *   ring  array('I') of M entries: the member position owning each slot (build_ring's result),
 *         or, with `ids` = identity, the backend index itself
 *   ids   array('H'): the backend index of each member position
 *   dest  a writable buffer of M 2-byte slots: one VIP's ring inside the mapping
 *
 * Makes dest[s] == ids[ring[s]] for every slot s, storing only where it differs. Each store is
 * one aligned 2-byte write, so the data plane reads the old or the new backend of a slot, never
 * a mix. A position outside `ids` raises ValueError (slots before it are already written; the
 * caller rewrites the ring). The GIL is released during the loop.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Gets a view of a 1-D buffer of `size`-byte unsigned ints of format `fmt`; 0 on success. */
static int get_view(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t size,
                    const char *fmt, const char *name)
{
    int flags = PyBUF_FORMAT | PyBUF_ND | (writable ? PyBUF_WRITABLE : 0);

    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->itemsize != size || view->ndim != 1 || view->format == NULL ||
        (strcmp(view->format, fmt) != 0 && !(view->format[0] == '=' &&
                                             strcmp(view->format + 1, fmt) == 0))) {
        PyErr_Format(PyExc_TypeError, "%s must be a 1-D buffer of '%s' items", name, fmt);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *ringio_apply(PyObject *self, PyObject *args)
{
    PyObject *o_ring, *o_ids, *o_dest;
    Py_buffer b_ring, b_ids, b_dest;
    Py_ssize_t m, n, written = 0, bad = -1;

    (void)self;
    if (!PyArg_ParseTuple(args, "OOO:apply", &o_ring, &o_ids, &o_dest))
        return NULL;
    if (get_view(o_ring, &b_ring, 0, 4, "I", "ring") < 0)
        return NULL;
    if (get_view(o_ids, &b_ids, 0, 2, "H", "ids") < 0) {
        PyBuffer_Release(&b_ring);
        return NULL;
    }
    if (get_view(o_dest, &b_dest, 1, 2, "H", "dest") < 0) {
        PyBuffer_Release(&b_ids);
        PyBuffer_Release(&b_ring);
        return NULL;
    }
    m = b_ring.shape[0];
    n = b_ids.shape[0];
    if (b_dest.shape[0] != m) {
        PyErr_Format(PyExc_ValueError, "dest has %zd slots, ring %zd", b_dest.shape[0], m);
    } else {
        const uint32_t *ring = b_ring.buf;
        const uint16_t *ids = b_ids.buf;
        volatile uint16_t *dest = b_dest.buf;

        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t s = 0; s < m; s++) {
            uint32_t pos = ring[s];
            uint16_t id;

            if ((Py_ssize_t)pos >= n) {
                bad = s;
                break;
            }
            id = ids[pos];
            if (dest[s] != id) {
                dest[s] = id;
                written++;
            }
        }
        Py_END_ALLOW_THREADS
        if (bad >= 0)
            PyErr_Format(PyExc_ValueError, "ring slot %zd names member %u, outside %zd ids",
                         bad, ((const uint32_t *)b_ring.buf)[bad], n);
    }
    PyBuffer_Release(&b_dest);
    PyBuffer_Release(&b_ids);
    PyBuffer_Release(&b_ring);
    if (PyErr_Occurred())
        return NULL;
    return PyLong_FromSsize_t(written);
}

static PyMethodDef ringio_methods[] = {
    {"apply", ringio_apply, METH_VARARGS,
     "apply(ring, ids, dest) -> slots written\n\n"
     "Make dest[s] == ids[ring[s]] for every slot, storing only the slots that differ."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef ringio_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lb.xdp._ringio",
    .m_doc = "Ring writes into the mmapped rings map; use lb.xdp.maps.Dataplane.write_ring.",
    .m_size = 0,
    .m_methods = ringio_methods,
};

PyMODINIT_FUNC PyInit__ringio(void)
{
    return PyModule_Create(&ringio_module);
}
