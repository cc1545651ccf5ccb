/* bench.h - benchmark-only prologue (compiled with -DLB_BENCH): undoes the
 * previous repetition so every BPF_PROG_TEST_RUN repetition sees the original
 * frame, and optionally makes each repetition a new flow by writing a
 * running 32-bit number over a flow field (e.g. the IPv4 source address).
 *
 * BPF_PROG_TEST_RUN with repeat=N reuses one buffer, head moves included; the
 * floors in bench/floors.c run this same prologue so ratios compare like with like.
 */
#pragma once

/* Bytes restored at the head of each repetition: the L2 header (with VLAN) and more. */
#define LB_BENCH_HEAD 32

/* What the harness writes before a run: the original frame's length and head. */
struct bench_state {
	__u32 frame_len;          /* original frame length */
	__u16 vary_offset;        /* where the 32-bit flow field is, when vary_flow */
	__u8 vary_flow;           /* 1: every repetition is a new flow */
	__u8 pad0;
	__u32 seq;                /* repetitions so far (new flows made) */
	__u32 pad1;
	__u8 head[LB_BENCH_HEAD]; /* the original first bytes */
};

/* The bench harness's state (one entry). */
BPF_ARRAY(bench_state, struct bench_state, 1);

/* 0 when the frame is back to the original; -1 if it could not be restored.
 * `st` is bench_state's entry, looked up by the caller (bcc rewrites map calls
 * in the main file only). */
static __always_inline int bench_restore(struct xdp_md *ctx, struct bench_state *st)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	long grown;

	if (!st)
		return -1;
	grown = (long)(end - data) - st->frame_len;
	if (grown && bpf_xdp_adjust_head(ctx, (int)grown))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + LB_BENCH_HEAD > end)
		return -1;
	__builtin_memcpy(data, st->head, LB_BENCH_HEAD);
	if (st->vary_flow) {
		__u16 off = st->vary_offset & 0xff;
		__be32 *field = data + off;

		if ((void *)(field + 1) > end)
			return -1;
		st->seq++;
		*field = bpf_htonl(st->seq);
	}
	return 0;
}
