/* chain.h - the contract of an lb chain: several XDP programs on one interface, in order.
 *
 * libxdp's dispatcher is the ecosystem's way to run several XDP programs on one interface;
 * where it does not load, lb runs a Katran-style chain instead. The program attached to the
 * interface is the root, `xdp_lb_root` (root.c): it owns `chain`, a program array pinned at
 * <pin_dir>/chain, and tail-calls its first filled slot. A program in slot N, where it would
 * return XDP_PASS, tail-calls the next filled slot instead, so only the last program's
 * XDP_PASS reaches the kernel; any other verdict (DROP, TX, REDIRECT, ABORTED) ends the
 * chain. A tail call that finds its slot empty falls through to the next one.
 *
 * The contract for a program in slot N is two lines:
 *
 *   #define LB_CHAIN_SLOT N           then  #include "chain.h"   (declares the pinned `chain`)
 *   and where it would return XDP_PASS:
 *     bcc:                            LB_CHAIN_EACH_NEXT(i) chain.call(ctx, i);
 *                                     return XDP_PASS;
 *     libbpf (clang -target bpf):     return lb_chain_pass(ctx);
 *
 * bcc rewrites map calls only where they are spelled in the program's own file (not in a
 * header, not in a macro), hence the loop head from here and the call written out there.
 * A bcc program is compiled with -DLB_CHAIN_PIN='"<pin_dir>/chain"' (or -DLB_PIN_DIR=...); a
 * libbpf program is opened with pin_root_path = <pin_dir> (its `chain` is LIBBPF_PIN_BY_NAME).
 * Its fd is then written into slot N of the pinned map (lb.xdp.chain.set_slot, or
 * `bpftool map update pinned <pin_dir>/chain key N 0 0 0 value id <prog id>`).
 */
#pragma once

/* Slots of the chain: programs that can run on one interface, in slot order. */
#ifndef LB_CHAIN_SLOTS
#define LB_CHAIN_SLOTS 8
#endif

#if defined(LB_CHAIN_SLOT) || defined(LB_CHAIN_ROOT)

#ifndef LB_CHAIN_SLOT
/* The root runs before slot 0. */
#define LB_CHAIN_SLOT -1
#endif

/* Loop head over the slots after this program's, in order (bcc: the body is the call). */
#define LB_CHAIN_EACH_NEXT(i) \
	_Pragma("unroll") for (int i = LB_CHAIN_SLOT + 1; i < LB_CHAIN_SLOTS; i++)

#ifdef BCC_SEC
/* bcc: the chain's program array, pinned where the root's is. */
#ifndef LB_CHAIN_PIN
#define LB_CHAIN_PIN LB_PIN_DIR "/chain"
#endif
BPF_TABLE_PINNED("prog", __u32, __u32, chain, LB_CHAIN_SLOTS, LB_CHAIN_PIN);
#else
/* libbpf: the chain's program array, pinned by name under the object's pin_root_path. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, LB_CHAIN_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} chain SEC(".maps");

/* Hand the packet to the next filled slot; XDP_PASS (to the kernel) if there is none. */
static __always_inline int lb_chain_pass(struct xdp_md *ctx)
{
	LB_CHAIN_EACH_NEXT(i)
		bpf_tail_call(ctx, &chain, i);
	return XDP_PASS;
}
#endif

#endif /* LB_CHAIN_SLOT || LB_CHAIN_ROOT */
