"""Tests for bench.scaling's pure parts: fdinfo parsing, map sizes, extrapolation, judging."""

import pytest

from bench import scaling as bs
from lb.xdp.config import Sizes

FDINFO = """pos:\t0
flags:\t02000002
mnt_id:\t15
ino:\t2072
map_type:\t6
key_size:\t4
value_size:\t64
max_entries:\t131072
map_flags:\t0x0
map_extra:\t0x0
memlock:\t17827840
map_id:\t412
frozen:\t0
"""


def test_fdinfo_gives_the_kernels_memlock_and_sizes():
    info = bs.parse_fdinfo(FDINFO)
    assert info["memlock"] == 17827840
    assert (info["map_type"], info["key_size"], info["value_size"], info["max_entries"]) == \
        (6, 4, 64, 131072)
    assert "map_flags" not in info  # hexadecimal, not needed


def test_map_entries_follow_lb_maps_h():
    sizes = Sizes()
    e = bs.map_entries(sizes)
    assert e["rings"] == 512 * 16385
    assert e["ct_v4"] == e["ct_v6"] == 131072 * sizes.cpus  # every CPU's slice
    assert e["vips_v4"] == 1024 and e["vip_filter"] == 65536
    assert e["vip_index_v4"] == 4096
    m = bs.map_entries(bs.MAXIMA)
    assert m["rings"] == 65536 * 16385 and m["ct_v4"] == (1 << 25) * bs.MAXIMA.cpus


def test_extrapolation_is_linear_in_entries():
    assert bs.extrapolate((100, 1100), (50, 600), 1000) == 10100
    assert bs.extrapolate((1, 4096), (1, 4096), 1) == 4096


def test_target_judging_and_byte_formatting():
    assert bs.judge(1.5) == "PASS"
    assert bs.judge(1.51) == "MISS"
    assert bs.judge(None) == "INVALID"
    assert bs.fmt_bytes(3 << 30) == "3.0 GiB"
    assert bs.fmt_bytes(1536) == "1.5 KiB"


def test_the_grid_needs_a_table_that_can_hold_a_million_flows():
    opts = bs.Options()
    assert opts.sizes().conn_table_size >= 4 * max(opts.flows)
    with pytest.raises(ValueError):
        bs.Options(conn_table_size=3).sizes()


def _row(flows, case, ns, floor_ns=60.0, ratio=None):
    return {"vips": 1, "backends": 10, "flows": flows, "case": case, "ns": ns,
            "floor_ns": floor_ns, "ratio_to_floor": ratio}


def test_targets_judge_settled_cycling_over_floors_and_report_the_table_path():
    opts = bs.Options(flows=(1, 1000), vips=(1,), backends=(10,))
    rows = [_row(1, "established", 100.0, ratio=2.0), _row(1000, "established", 110.0),
            _row(1000, "cycling", 300.0, floor_ns=240.0, ratio=1.25),
            _row(1, "established_settled", 90.0, ratio=1.6),
            _row(1000, "cycling_settled", 180.0, ratio=3.2)]
    (t,) = bs.targets(rows, opts)["established_vs_one_flow"]
    # Judged: settled cycling over its floor / the cheaper one-flow figure over its floor.
    assert (t["one_flow_case"], t["ratio"], t["result"]) == ("established_settled", 2.0, "MISS")
    assert t["ns_ratio"] == 2.0  # 180 / 90 ns, beside it
    # Beside it, the table path against its own one-flow figure.
    assert (t["ratio_table"], t["ratio_one_flow"], t["ratio_probe_floor"],
            t["cycling_over_probe"]) == (3.0, 1.1, 2.4, 1.25)
    # The host slowed down while cycling ran: its floor did too, and the judged ratio holds.
    rows[4] = _row(1000, "cycling_settled", 240.0, floor_ns=100.0, ratio=2.4)
    (t,) = bs.targets(rows, opts)["established_vs_one_flow"]
    assert (t["ratio"], t["result"], t["ns_ratio"]) == (1.5, "PASS", 2.667)
    rows[3] = _row(1, "established_settled", 120.0, ratio=2.1)  # the table's is cheaper now
    (t,) = bs.targets(rows, opts)["established_vs_one_flow"]
    assert (t["one_flow_case"], t["established_1_ns"], t["ratio"]) == ("established", 100.0, 1.2)
    (t,) = bs.targets(rows[:3], opts)["established_vs_one_flow"]
    assert t["result"] == "INVALID" and t["ratio_table"] == 3.0
