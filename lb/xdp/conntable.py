"""The connection tables through their mmaps: read, purge, clear, plant (lb/xdp/_ringio.c).

Per family, one array of cpus * conn_table_sets sets of 2 ways, CPU-major: CPU c's slice is
elements [c * sets, (c + 1) * sets). Where a flow lives and which way it takes are the rules
of lb/xdp/conntable.h, which the program and _ringio share. The control plane's writes
(purge, set_conn_entry) can race the program on the same set: a flow the program inserts
into that very set meanwhile may be lost, and takes a fresh ring decision on its next
packet (as after an eviction). Mixed into lb.xdp.maps.Dataplane, which maps the tables
(`_ct_view`) and knows `sizes`.
"""

from __future__ import annotations

import array
import ctypes
import socket
from collections.abc import Iterator

from lb.xdp import _ringio
from lb.xdp.config import Sizes
from lb.xdp.consts import CT_WAYS
from lb.xdp.mapkeys import addr_from_words, flow_key
from lb.xdp.structs import CtEntryV4, CtEntryV6, CtSetV4, CtSetV6, CtState, FlowV4, FlowV6
from lb.xdp.types import Flow

# Per family (False: IPv4): the connection-table map, its set mirror, way mirror, flow mirror.
CT_FAMILIES = {False: ("ct_v4", CtSetV4, CtEntryV4, FlowV4),
               True: ("ct_v6", CtSetV6, CtEntryV6, FlowV6)}


class ConnTableMaps:
    """Dataplane's connection-table methods (ct_v4 and ct_v6, mmapped)."""

    sizes: Sizes
    _ct_view: dict[bool, memoryview]  # per family, a byte view of the whole array

    def _ct_offset(self, v6: bool, cpu: int, set_num: int) -> int:
        """Byte offset of CPU `cpu`'s copy of set `set_num` in the family's mapping."""
        return (cpu * self.sizes.conn_table_sets + set_num) * ctypes.sizeof(CT_FAMILIES[v6][1])

    def _ct_live(self, v6: bool,
                 backend: int | None = None) -> list[tuple[int, int, int, bytes]]:
        """(set, CPU, way, the way's bytes) of every live way of one family's table (only
        those naming `backend`, if given): each way's backend field is picked out of the
        mapping with a strided slice, so empty ways cost no Python."""
        _, set_type, entry_type, _ = CT_FAMILIES[v6]
        size, way_size = ctypes.sizeof(set_type), ctypes.sizeof(entry_type)
        state_at = entry_type.state.offset + CtState.backend.offset
        sets = self.sizes.conn_table_sets
        view = self._ct_view[v6]
        live = []
        with view.cast("H") as u16:
            for way in range(CT_WAYS):
                at = way * way_size + state_at
                with u16[at // 2::size // 2] as field:
                    found = field.tolist()
                for i, b in enumerate(found):  # i = cpu * sets + set
                    if b and (backend is None or b == backend):
                        start = i * size + way * way_size
                        live.append((i % sets, i // sets, way, bytes(view[start:start + way_size])))
        return live

    def conn_set(self, v6: bool, cpu: int, set_num: int) -> bytes:
        """CPU `cpu`'s copy of set `set_num` of one family's table, as bytes (a read)."""
        size = ctypes.sizeof(CT_FAMILIES[v6][1])
        at = self._ct_offset(v6, cpu, set_num)
        return bytes(self._ct_view[v6][at:at + size])

    def live_conn_entries(self, cpu: int | None = None) -> int:
        """How many ways of both tables hold a flow (on CPU `cpu` only, if given)."""
        return sum(1 for v6 in (False, True) for _set, c, _way, _raw in self._ct_live(v6)
                   if cpu is None or c == cpu)

    def conn_table(self) -> Iterator[tuple[Flow, int]]:
        """Every live (flow, backend index) of both connection tables, over every CPU (a flow
        whose packets came in on two CPUs is there twice)."""
        for v6 in (False, True):
            entry_type = CT_FAMILIES[v6][2]
            for _set, _cpu, _way, raw in self._ct_live(v6):
                e = entry_type.from_buffer_copy(raw)
                k = e.flow
                src = addr_from_words(k.src if v6 else [k.src], v6)
                dst = addr_from_words(k.dst if v6 else [k.dst], v6)
                yield (Flow(src, dst, socket.ntohs(k.sport), socket.ntohs(k.dport), k.proto),
                       e.state.backend)

    def clear_conn_table(self) -> None:
        """Empty both connection tables on every CPU."""
        chunk = 1 << 20
        zeros = bytes(chunk)
        for view in self._ct_view.values():
            for at in range(0, len(view), chunk):
                n = min(chunk, len(view) - at)
                view[at:at + n] = zeros[:n]

    def purge_conn_entries(self, backend: int) -> int:
        """Empty every connection-table way (any CPU) that points at `backend`; returns how
        many ways were emptied."""
        purged = 0
        for v6 in (False, True):
            _, _, entry_type, _ = CT_FAMILIES[v6]
            way_size = ctypes.sizeof(entry_type)
            state_at = entry_type.state.offset + CtState.backend.offset
            view, empty = self._ct_view[v6], bytes(way_size)
            for set_num, cpu, way, _raw in self._ct_live(v6, backend):
                start = self._ct_offset(v6, cpu, set_num) + way * way_size
                at = start + state_at
                if int.from_bytes(view[at:at + 2], "little") == backend:  # still it: empty it
                    view[start:start + way_size] = empty
                    purged += 1
        return purged

    def set_conn_entry(self, flow: Flow, backend: int) -> None:
        """Put `flow` -> `backend` in its set on every CPU, as the program would on a fresh
        decision (lb/xdp/_ringio.c's plant, by the program's own rules: lb/xdp/conntable.h).
        Tests and benchmarks prime the table with it."""
        if not 1 <= backend < self.sizes.max_backends:
            raise ValueError(f"backend index {backend} outside 1..{self.sizes.max_backends - 1}")
        v6 = flow.src.version == 6
        key = flow_key(flow)
        _ringio.plant(self._ct_view[v6], v6, bytes(key), backend, self.sizes.conn_table_sets,
                      self.sizes.cpus)


    def reset_idle_settles(self) -> None:
        """Zero every connection-table way's idle_settles (the counts are in units of the
        settle interval of whoever counted them: a restart may change it)."""
        for v6, (_, set_type, entry_type, _) in CT_FAMILIES.items():
            size, way_size = ctypes.sizeof(set_type), ctypes.sizeof(entry_type)
            at = entry_type.state.offset + CtState.idle_settles.offset
            with self._ct_view[v6].cast("H") as u16:
                for way in range(CT_WAYS):
                    field = u16[(way * way_size + at) // 2::size // 2]
                    field[:] = array.array("H", bytes(2 * len(field)))
                    field.release()
