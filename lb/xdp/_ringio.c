/* Ring slots in the mmapped `rings` map, and the connection table's rules on the mmapped
 * ct_v4/ct_v6 maps, for lb/xdp/maps.py (Dataplane.write_ring, .scan, .settle, .set_conn_entry).
 *
 * apply(ring, ids, dest) -> slots written
 *
 *   ring  array('I') of M entries: the member position owning each slot (build_ring's result),
 *         or, with `ids` = identity, the backend index itself
 *   ids   array('H'): the backend index of each member position (each <= LB_SLOT_BACKEND)
 *   dest  a writable buffer of M 2-byte slots: one VIP's ring inside the mapping
 *
 * Makes dest[s] == ids[ring[s]] for every slot s whose backend differs (a plain index: the
 * rewritten slot is unsettled), and leaves the others alone, settled or not. Each store is
 * one aligned 2-byte write, so the data plane reads the old or the new slot, never a mix. A
 * position outside `ids`, or an id with the top bit, raises ValueError (slots before it are
 * already written; the caller rewrites the ring). The GIL is released during the loop.
 *
 * scan(table, v6, keys, vips, slots, stride, ring_size, limit) -> held
 * settle(held, vips, slots, stride, ring_size, left) -> slots settled
 *
 *   table      one family's connection table (every CPU's slice): struct ct_set_v4/_v6 items,
 *              writable (each way's idle_settles is counted here)
 *   keys       n struct vip_key_v4/_v6, the family's TCP VIPs, sorted by their bytes
 *   vips       array('I') of 3n: per key (its row) its vip_num, flags, and 1 to settle it
 *              now, 0 to only look it up (so that a flow of it is not taken for one of a
 *              port-0 VIP of the same address)
 *   slots      the 'H' view of the whole rings map; VIP v's ring starts at v * stride
 *   limit      settles a way may stay idle and still hold its slot (at most 65535)
 *   held       what scan returned: the held slots as sorted u64 (row << 32 | slot)
 *   left       writable array('I') of n: set to the unsettled slots each VIP settled keeps
 *
 * scan: a TCP way of a VIP to settle (the VIP the data plane would pick: the exact port, else
 * port 0) that names another backend than its ring slot (ring hashing exactly as the data
 * plane, from the same header) holds the slot while its idle_settles is under `limit`, and
 * has it counted up by one (a compare-and-swap: a zero the program stores meanwhile, on the
 * flow's next packet, wins). A ring change makes a flow disagree with its slot from then on,
 * so every such flow gets `limit` settles from the change, even one whose packets skipped
 * the table before it. A way that agrees with its slot has its count zeroed. One pass over
 * the table serves every VIP, and it needs no lock: it only reads the rings.
 *
 * settle: every unsettled slot with a backend, of a VIP to settle, that `held` does not name
 * is settled: its top bit set with one 2-byte store. The caller serialises this with apply(),
 * and settles only VIPs whose rings no write changed since their scan.
 *
 * plant(table, v6, flow, backend, sets, cpus) -> None
 *
 *   table  one family's connection table, writable; `sets` sets per CPU, `cpus` slices
 *   flow   the bytes of one struct flow_v4/_v6 (padding zero)
 *
 * Makes each CPU's slice remember flow -> backend as the data plane's fresh decision would
 * (conntable.h's ct_decide: its own way, else an empty or the least recently used one, made
 * the most recently used; a UDP way stamped now). Tests and benchmarks prime the table so.
 *
 * Which ways a settle counts, how it counts them, where a flow's set and ring slot are, and
 * the table's clock are conntable.h's, the header the data plane includes too.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <netinet/in.h>
#include <linux/types.h>

/* lb_consts.h wants the host's CPU count; nothing here depends on it. */
#define LB_CT_CPUS 1
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#include "lb_structs.h"
#include "flowhash.h"

/* The connection table's clock (conntable.h): the data plane's bpf_ktime_get_coarse_ns(). */
static inline __u64 ct_clock_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (__u64)ts.tv_sec * 1000000000ull + (__u64)ts.tv_nsec;
}

#include "conntable.h"

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
            if (id & ~LB_SLOT_BACKEND) {
                bad = s;
                break;
            }
            if ((dest[s] & LB_SLOT_BACKEND) != id) {
                dest[s] = id;
                written++;
            }
        }
        Py_END_ALLOW_THREADS
        if (bad >= 0 && ((const uint32_t *)b_ring.buf)[bad] >= (uint32_t)n)
            PyErr_Format(PyExc_ValueError, "ring slot %zd names member %u, outside %zd ids",
                         bad, ((const uint32_t *)b_ring.buf)[bad], n);
        else if (bad >= 0)
            PyErr_Format(PyExc_ValueError, "ring slot %zd names backend index %u, above %u",
                         bad, ((const uint16_t *)b_ids.buf)[((const uint32_t *)b_ring.buf)[bad]],
                         LB_SLOT_BACKEND);
    }
    PyBuffer_Release(&b_dest);
    PyBuffer_Release(&b_ids);
    PyBuffer_Release(&b_ring);
    if (PyErr_Occurred())
        return NULL;
    return PyLong_FromSsize_t(written);
}


/* What settle() knows of one VIP (a row of its `vips` argument). */
struct settle_vip {
    uint32_t vip_num, flags, settle;
};

/* The scan's inputs and its list of held slots ((row << 32) | slot), shared by both families. */
struct settle_scan {
    const uint8_t *keys;
    const struct settle_vip *vips;
    size_t n, key_size;
    uint32_t limit, ring_size;
    size_t stride;
    volatile uint16_t *slots;
    uint64_t *held;
    size_t held_n, held_cap;
    int no_memory;
};

/* The row of the VIP `key` names, or -1. */
static long find_vip(const struct settle_scan *sc, const void *key)
{
    size_t lo = 0, hi = sc->n;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = memcmp(sc->keys + mid * sc->key_size, key, sc->key_size);

        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* The row of the VIP the data plane picks for a flow's `key` (its exact port, else port 0,
 * through `port`, the key's port field), or -1. */
static long pick_vip(const struct settle_scan *sc, void *key, __be16 *port)
{
    long row = find_vip(sc, key);

    if (row < 0) {
        *port = 0;
        row = find_vip(sc, key);
    }
    return row;
}

static void hold(struct settle_scan *sc, size_t row, uint32_t slot)
{
    if (sc->held_n == sc->held_cap) {
        size_t cap = sc->held_cap ? 2 * sc->held_cap : 1024;
        uint64_t *grown = realloc(sc->held, cap * sizeof(*grown));

        if (!grown) {
            sc->no_memory = 1;
            return;
        }
        sc->held = grown;
        sc->held_cap = cap;
    }
    sc->held[sc->held_n++] = ((uint64_t)row << 32) | slot;
}

/* Count a TCP way of the VIP in `row` (conntable.h's ct_settle_step): the slot it holds, if
 * any, goes on the held list, and its new idle count is stored with a compare-and-swap (a
 * zero the program stores meanwhile, on the flow's next packet, wins). */
static void count_way(struct settle_scan *sc, long row, struct ct_state *st, uint32_t hash)
{
    const struct settle_vip *v;
    uint32_t slot = ring_pos(hash, sc->ring_size);
    uint16_t idle = __atomic_load_n(&st->idle_settles, __ATOMIC_RELAXED), next;
    int agrees, holds;

    if (!(v = &sc->vips[row])->settle)
        return;
    agrees = (sc->slots[v->vip_num * sc->stride + slot] & LB_SLOT_BACKEND) == st->backend;
    next = ct_settle_step(idle, agrees, sc->limit, &holds);
    if (holds)
        hold(sc, (size_t)row, slot);
    if (next != idle)
        __atomic_compare_exchange_n(&st->idle_settles, &idle, next, 0, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED);
}

static void scan_v4(struct settle_scan *sc, struct ct_set_v4 *sets, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        for (int w = 0; w < LB_CT_WAYS; w++) {
            struct ct_entry_v4 *e = &sets[i].way[w];
            struct vip_key_v4 key = { .addr = e->flow.dst, .port = e->flow.dport,
                                      .proto = IPPROTO_TCP };
            long row;

            if (!ct_settle_counts(&e->state, e->flow.proto))
                continue;
            row = pick_vip(sc, &key, &key.port);
            if (row >= 0)
                count_way(sc, row, &e->state, flow_hash_v4(&e->flow, sc->vips[row].flags));
        }
    }
}

static void scan_v6(struct settle_scan *sc, struct ct_set_v6 *sets, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        for (int w = 0; w < LB_CT_WAYS; w++) {
            struct ct_entry_v6 *e = &sets[i].way[w];
            struct vip_key_v6 key = { .port = e->flow.dport, .proto = IPPROTO_TCP };
            long row;

            if (!ct_settle_counts(&e->state, e->flow.proto))
                continue;
            memcpy(key.addr, e->flow.dst, sizeof(key.addr));
            row = pick_vip(sc, &key, &key.port);
            if (row >= 0)
                count_way(sc, row, &e->state, flow_hash_v6(&e->flow, sc->vips[row].flags));
        }
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Settle the VIPs to settle, walking the sorted held list beside their slots; left[row]:
 * the slots each keeps unsettled. */
static size_t settle_rings(const struct settle_vip *vips, size_t n, const uint64_t *held,
                           size_t held_n, volatile uint16_t *slots, size_t stride,
                           uint32_t ring_size, uint32_t *left)
{
    size_t settled = 0, h = 0;

    for (size_t row = 0; row < n; row++) {
        volatile uint16_t *ring = slots + vips[row].vip_num * stride;

        left[row] = 0;
        if (!vips[row].settle)
            continue;
        for (uint32_t s = 0; s < ring_size; s++) {
            uint64_t here = ((uint64_t)row << 32) | s;
            uint16_t cur = ring[s];

            while (h < held_n && held[h] < here)
                h++;
            if ((cur & LB_SLOT_SETTLED) || !(cur & LB_SLOT_BACKEND))
                continue;
            if (h < held_n && held[h] == here) {
                left[row]++;
            } else {
                ring[s] = cur | LB_SLOT_SETTLED;
                settled++;
            }
        }
    }
    return settled;
}

/* Checks shared by scan() and settle(): `vips` rows against the keys and the rings. */
static const char *check_rows(const struct settle_vip *vips, size_t n, size_t vips_words,
                              Py_ssize_t slots_n, Py_ssize_t stride, Py_ssize_t ring_size)
{
    if (vips_words != 3 * n)
        return "vips needs 3 words per key";
    if (ring_size < 1 || ring_size > UINT32_MAX || stride < ring_size)
        return "ring_size must be 1..stride";
    for (size_t i = 0; i < n; i++)
        if (((size_t)vips[i].vip_num + 1) * (size_t)stride > (size_t)slots_n)
            return "a vip_num is outside the rings";
    return NULL;
}

static PyObject *ringio_scan(PyObject *self, PyObject *args)
{
    PyObject *o_table, *o_keys, *o_vips, *o_slots, *result = NULL;
    /* Zeroed: PyBuffer_Release ignores a view whose obj is NULL (never got, or released). */
    Py_buffer b_table = {0}, b_keys = {0}, b_vips = {0}, b_slots = {0};
    int v6;
    Py_ssize_t stride, ring_size;
    unsigned int limit;
    size_t set_size;
    struct settle_scan sc;
    const char *error = NULL;

    (void)self;
    memset(&sc, 0, sizeof(sc));
    if (!PyArg_ParseTuple(args, "OpOOOnnI:scan", &o_table, &v6, &o_keys, &o_vips, &o_slots,
                          &stride, &ring_size, &limit))
        return NULL;
    if (PyObject_GetBuffer(o_table, &b_table, PyBUF_WRITABLE) < 0 ||
        PyObject_GetBuffer(o_keys, &b_keys, PyBUF_SIMPLE) < 0 ||
        get_view(o_vips, &b_vips, 0, 4, "I", "vips") < 0 ||
        get_view(o_slots, &b_slots, 0, 2, "H", "slots") < 0)
        goto done;
    set_size = v6 ? sizeof(struct ct_set_v6) : sizeof(struct ct_set_v4);
    sc.key_size = v6 ? sizeof(struct vip_key_v6) : sizeof(struct vip_key_v4);
    sc.keys = b_keys.buf;
    sc.vips = b_vips.buf;
    sc.n = (size_t)b_keys.len / sc.key_size;
    sc.limit = limit;
    sc.ring_size = (uint32_t)ring_size;
    sc.stride = (size_t)stride;
    sc.slots = b_slots.buf;
    if ((size_t)b_table.len % set_size)
        error = "table is not a whole number of sets";
    else if ((size_t)b_keys.len % sc.key_size)
        error = "keys is not a whole number of VIP keys";
    else if (limit > 0xffff)
        error = "limit must be at most 65535";
    else
        error = check_rows(sc.vips, sc.n, (size_t)b_vips.shape[0], b_slots.shape[0], stride,
                           ring_size);
    for (size_t i = 1; !error && i < sc.n; i++)
        if (memcmp(sc.keys + (i - 1) * sc.key_size, sc.keys + i * sc.key_size,
                   sc.key_size) >= 0)
            error = "keys must be sorted and distinct";
    if (error) {
        PyErr_SetString(PyExc_ValueError, error);
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (v6)
        scan_v6(&sc, b_table.buf, (size_t)b_table.len / set_size);
    else
        scan_v4(&sc, b_table.buf, (size_t)b_table.len / set_size);
    if (!sc.no_memory)
        qsort(sc.held, sc.held_n, sizeof(*sc.held), cmp_u64);
    Py_END_ALLOW_THREADS
    if (sc.no_memory)
        PyErr_NoMemory();
    else
        result = PyBytes_FromStringAndSize((const char *)sc.held,
                                           (Py_ssize_t)(sc.held_n * sizeof(*sc.held)));
done:
    free(sc.held);
    PyBuffer_Release(&b_slots);
    PyBuffer_Release(&b_vips);
    PyBuffer_Release(&b_keys);
    PyBuffer_Release(&b_table);
    return result;
}

static PyObject *ringio_settle(PyObject *self, PyObject *args)
{
    PyObject *o_held, *o_vips, *o_slots, *o_left;
    Py_buffer b_held = {0}, b_vips = {0}, b_slots = {0}, b_left = {0};
    Py_ssize_t stride, ring_size;
    size_t n, settled = 0;
    const char *error;

    (void)self;
    if (!PyArg_ParseTuple(args, "OOOnnO:settle", &o_held, &o_vips, &o_slots, &stride,
                          &ring_size, &o_left))
        return NULL;
    if (PyObject_GetBuffer(o_held, &b_held, PyBUF_SIMPLE) < 0 ||
        get_view(o_vips, &b_vips, 0, 4, "I", "vips") < 0 ||
        get_view(o_slots, &b_slots, 1, 2, "H", "slots") < 0 ||
        get_view(o_left, &b_left, 1, 4, "I", "left") < 0)
        goto done;
    n = (size_t)b_left.shape[0];
    error = check_rows(b_vips.buf, n, (size_t)b_vips.shape[0], b_slots.shape[0], stride,
                       ring_size);
    if (!error && b_held.len % sizeof(uint64_t))
        error = "held is not a whole number of u64";
    for (size_t i = 1; !error && i < (size_t)b_held.len / sizeof(uint64_t); i++)
        if (((const uint64_t *)b_held.buf)[i - 1] > ((const uint64_t *)b_held.buf)[i])
            error = "held must be sorted";
    if (error) {
        PyErr_SetString(PyExc_ValueError, error);
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    settled = settle_rings(b_vips.buf, n, b_held.buf, (size_t)b_held.len / sizeof(uint64_t),
                           b_slots.buf, (size_t)stride, (uint32_t)ring_size, b_left.buf);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&b_left);
    PyBuffer_Release(&b_slots);
    PyBuffer_Release(&b_vips);
    PyBuffer_Release(&b_held);
    if (PyErr_Occurred())
        return NULL;
    return PyLong_FromSize_t(settled);
}

static PyObject *ringio_plant(PyObject *self, PyObject *args)
{
    PyObject *o_table, *o_flow;
    Py_buffer b_table = {0}, b_flow = {0};
    int v6;
    unsigned int backend, sets, cpus;
    size_t set_size, flow_size;
    const char *error = NULL;

    (void)self;
    if (!PyArg_ParseTuple(args, "OpOIII:plant", &o_table, &v6, &o_flow, &backend, &sets, &cpus))
        return NULL;
    if (PyObject_GetBuffer(o_table, &b_table, PyBUF_WRITABLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(o_flow, &b_flow, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&b_table);
        return NULL;
    }
    set_size = v6 ? sizeof(struct ct_set_v6) : sizeof(struct ct_set_v4);
    flow_size = v6 ? sizeof(struct flow_v6) : sizeof(struct flow_v4);
    if ((size_t)b_flow.len != flow_size)
        error = "flow is not one struct flow_v4/_v6";
    else if (!backend || backend > LB_SLOT_BACKEND)
        error = "backend must be 1..32767";
    else if (!sets || sets & (sets - 1))
        error = "sets must be a power of two";
    else if ((size_t)b_table.len < (size_t)sets * cpus * set_size)
        error = "table is smaller than cpus * sets sets";
    if (error) {
        PyErr_SetString(PyExc_ValueError, error);
    } else {
        /* A copy: the flow is compared and stored as aligned u64 words, as in the program. */
        union { struct flow_v4 v4; struct flow_v6 v6; } flow;
        uint8_t proto;
        uint32_t hash;

        memcpy(&flow, b_flow.buf, flow_size);
        proto = v6 ? flow.v6.proto : flow.v4.proto;
        hash = v6 ? flow_hash_v6(&flow.v6, 0) : flow_hash_v4(&flow.v4, 0);
        for (uint32_t cpu = 0; cpu < cpus; cpu++) {
            void *set = (uint8_t *)b_table.buf + (size_t)ct_set_index(cpu, hash, sets) * set_size;

            ct_decide(set, ct_find(set, &flow, v6), &flow, v6, backend, proto);
        }
    }
    PyBuffer_Release(&b_flow);
    PyBuffer_Release(&b_table);
    if (error)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef ringio_methods[] = {
    {"apply", ringio_apply, METH_VARARGS,
     "apply(ring, ids, dest) -> slots written\n\n"
     "Make dest[s] == ids[ring[s]] for every slot, storing only the slots that differ\n"
     "(as plain indexes: unsettled)."},
    {"scan", ringio_scan, METH_VARARGS,
     "scan(table, v6, keys, vips, slots, stride, ring_size, limit) -> held\n\n"
     "Count the connection table's TCP ways of the VIPs to settle; the slots they hold, as\n"
     "sorted u64 (row << 32 | slot) bytes."},
    {"settle", ringio_settle, METH_VARARGS,
     "settle(held, vips, slots, stride, ring_size, left) -> slots settled\n\n"
     "Settle every unsettled slot of the VIPs to settle that `held` does not name;\n"
     "left[row]: the slots each keeps."},
    {"plant", ringio_plant, METH_VARARGS,
     "plant(table, v6, flow, backend, sets, cpus) -> None\n\n"
     "Remember flow -> backend in its set of every CPU's slice, as the data plane's fresh\n"
     "decision would."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef ringio_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lb.xdp._ringio",
    .m_doc = "Ring slot writes, settling and connection-table planting in the mmapped maps; "
              "use lb.xdp.maps.Dataplane.",
    .m_size = 0,
    .m_methods = ringio_methods,
};

PyMODINIT_FUNC PyInit__ringio(void)
{
    return PyModule_Create(&ringio_module);
}
