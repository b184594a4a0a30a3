// The subnet-router role of a node: when the netmap makes it the primary
// router for approved subnets, IP forwarding goes on and its nftables table
// (system/nftables.ts) accepts forwarding between the TUN and those subnets,
// masquerading mesh sources when SNAT is on. Applied only when what it should
// be changes; removed, and forwarding restored, when it routes nothing.
import type { Logger } from '../daemon/log.js';
import { Forwarding } from '../system/forwarding.js';
import { applyRuleset, removeRuleset } from '../system/nftables.js';

export class SubnetRouter {
  private applied: string | null = null;
  private forwarding: Forwarding | null = null;

  constructor(private readonly log: Logger) {}

  /** What is routed now (for status). */
  get active(): boolean {
    return this.applied !== null;
  }

  async apply(tun: string | null, routes: string[], snat: boolean): Promise<void> {
    const want = tun && routes.length ? JSON.stringify({ tun, routes: [...routes].sort(), snat }) : null;
    if (want === this.applied) return;
    if (want === null) {
      await removeRuleset();
      await this.forwarding?.restore();
      this.forwarding = null;
      this.applied = null;
      this.log.info('subnet routing off');
      return;
    }
    if (!this.forwarding) {
      this.forwarding = new Forwarding();
      await this.forwarding.enable();
    }
    await applyRuleset({ tun: tun!, routes, snat });
    this.applied = want;
    this.log.info({ routes, snat }, 'routing subnets for the mesh');
  }
}
