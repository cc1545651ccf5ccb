/* root.c - the chain's root (chain.h): attached to the interface when lb shares it.
 *
 * It tail-calls the first filled slot of `chain`; a packet no slot takes (the chain is
 * empty) goes to the kernel. Compiled with -DLB_CHAIN_PIN='"<pin_dir>/chain"'.
 */
#include <uapi/linux/bpf.h>
#define LB_CHAIN_ROOT
#include "chain.h"

int xdp_lb_root(struct xdp_md *ctx)
{
	LB_CHAIN_EACH_NEXT(i)
		chain.call(ctx, i);
	return XDP_PASS;
}
