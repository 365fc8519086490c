/**
 * The subnet as one host sees it: which port has which LID, and the wires between connected QPs
 * of different ports (the role of the subnet manager plus the cables). When a QP goes to RTR
 * with a destination LID and QPN, the driver asks here what the peer is: its own port
 * (loopback), or another port reached through a link (fabric/wire.ts). Both QPs of a pair ask;
 * the first creates the link, the second takes the other end. Across hosts a TCP link will be
 * made here instead, from addresses exchanged over NATS (rdma_cm's job).
 *
 * Thread: kernel.
 */
import { err } from '../../../common/errno.ts';
import { type ShmWireEndDesc, shmWireCreatePair } from '../../fabric/wire.ts';
import type { HostKernel } from '../kernel.ts';

/** A port's doorbell: the word its NIC worker sleeps on. */
export interface IbPortWake {
  sab: SharedArrayBuffer;
  index: number;
}

interface Subnet {
  nextLid: number;
  ports: Map<number, IbPortWake>;
  /** One end of a link waiting for its QP, keyed "lid/qpn>lid/qpn" from the waiting QP's side. */
  pending: Map<string, ShmWireEndDesc>;
}

const subnets = new WeakMap<HostKernel, Subnet>();

function subnet(kernel: HostKernel): Subnet {
  let s = subnets.get(kernel);
  if (!s) subnets.set(kernel, (s = { nextLid: 1, ports: new Map(), pending: new Map() }));
  return s;
}

/** Give a port a LID (the SM's assignment). Called by: the driver's probe. */
export function ibFabricAddPort(kernel: HostKernel, wake: IbPortWake): number {
  const s = subnet(kernel);
  const lid = s.nextLid++;
  s.ports.set(lid, wake);
  return lid;
}

/** The port is gone: forget it and every link end still waiting on it. */
export function ibFabricRemovePort(kernel: HostKernel, lid: number): void {
  const s = subnet(kernel);
  s.ports.delete(lid);
  for (const k of [...s.pending.keys()])
    if (k.startsWith(`${lid}/`) || k.includes(`>${lid}/`)) s.pending.delete(k);
}

/** How QP (lid, qpn) reaches (dlid, dqpn): on its own port, or through this link end. */
export type IbPath = { kind: 'local' } | ShmWireEndDesc;

/**
 * Resolve the path of QP `qpn` on port `lid` to QP `dqpn` on port `dlid`.
 * Called by: the driver's modify_qp to RTR. Throws: EINVAL naming the dlid when no port has it.
 */
export function ibFabricConnect(
  kernel: HostKernel,
  lid: number,
  qpn: number,
  dlid: number,
  dqpn: number,
): IbPath {
  const s = subnet(kernel);
  if (dlid === lid) return { kind: 'local' };
  const here = s.ports.get(lid);
  const there = s.ports.get(dlid);
  if (!here || !there)
    throw err('EINVAL', `modify_qp: attr.ah_attr.dlid ${dlid} is not a port of this subnet`);
  const mine = `${lid}/${qpn}>${dlid}/${dqpn}`;
  const waiting = s.pending.get(mine);
  if (waiting) {
    s.pending.delete(mine);
    return waiting;
  }
  const [a, b] = shmWireCreatePair(here, there);
  s.pending.set(`${dlid}/${dqpn}>${lid}/${qpn}`, b);
  return a;
}

/** QP `qpn` on `lid` went away: a link end still waiting for it is dropped. */
export function ibFabricDisconnect(kernel: HostKernel, lid: number, qpn: number): void {
  const s = subnet(kernel);
  const me = `${lid}/${qpn}`;
  for (const k of [...s.pending.keys()])
    if (k.startsWith(`${me}>`) || k.endsWith(`>${me}`)) s.pending.delete(k);
}
