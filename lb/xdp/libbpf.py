"""libbpf.so.1, opened once: the few bpf(2) wrappers this project calls through ctypes.

bcc-free: a module that needs a pin, a map element or a test run without compiling anything
imports LIBBPF from here. Every function is declared with its argtypes and restype (libbpf 1.x,
tools/lib/bpf/bpf.h); each returns 0 (or a new fd) on success and a negative value on failure,
with the cause in ctypes.get_errno() (the library is opened with use_errno=True).
"""

from __future__ import annotations

import ctypes

LIBBPF = ctypes.CDLL("libbpf.so.1", use_errno=True)

_int, _u32, _u64, _ptr, _str = (ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_void_p,
                                ctypes.c_char_p)

# name: (argtypes, restype). Pointers to structs and buffers are void * (pass ctypes.byref()).
_DECLARATIONS: dict[str, tuple[list[type], type]] = {
    # int bpf_obj_get(const char *pathname): an fd of the object pinned at the path.
    "bpf_obj_get": ([_str], _int),
    # int bpf_obj_pin(int fd, const char *pathname)
    "bpf_obj_pin": ([_int, _str], _int),
    # int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len)
    "bpf_obj_get_info_by_fd": ([_int, _ptr, ctypes.POINTER(_u32)], _int),
    # int bpf_prog_get_fd_by_id(__u32 id)
    "bpf_prog_get_fd_by_id": ([_u32], _int),
    # int bpf_map_create(enum bpf_map_type, const char *name, __u32 key_size,
    #                    __u32 value_size, __u32 max_entries, const struct bpf_map_create_opts *)
    "bpf_map_create": ([_int, _str, _u32, _u32, _u32, _ptr], _int),
    # int bpf_map_lookup_elem(int fd, const void *key, void *value)
    "bpf_map_lookup_elem": ([_int, _ptr, _ptr], _int),
    # int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags)
    "bpf_map_update_elem": ([_int, _ptr, _ptr, _u64], _int),
    # int bpf_prog_test_run_opts(int prog_fd, struct bpf_test_run_opts *opts)
    "bpf_prog_test_run_opts": ([_int, _ptr], _int),
}

for _name, (_args, _res) in _DECLARATIONS.items():
    _fn = getattr(LIBBPF, _name)
    _fn.argtypes, _fn.restype = _args, _res
