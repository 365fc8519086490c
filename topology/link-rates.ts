/**
 * Link arithmetic of the timing model: what one PCIe link or one NIC port carries in payload
 * bytes per second. Formulas and their sources are written out in docs/timing-model.md; every
 * constant here has a line there.
 */
import type { PcieLink } from './model.ts';

/** Per generation: transfer rate per lane, line encoding, and whether the link runs in FLIT mode. */
export const PCIE_GEN_SPEC = {
  1: { gtps: 2.5, encoding: 8 / 10, encodingName: '8b/10b', flit: false },
  2: { gtps: 5, encoding: 8 / 10, encodingName: '8b/10b', flit: false },
  3: { gtps: 8, encoding: 128 / 130, encodingName: '128b/130b', flit: false },
  4: { gtps: 16, encoding: 128 / 130, encodingName: '128b/130b', flit: false },
  5: { gtps: 32, encoding: 128 / 130, encodingName: '128b/130b', flit: false },
  6: { gtps: 64, encoding: 1, encodingName: 'PAM4 FLIT (1b/1b)', flit: true },
} as const;

/** Gen6 FLIT: 256-byte flit = 236 TLP bytes + 6 DLLP + 8 CRC + 6 FEC. */
export const FLIT_TLP_FRACTION = 236 / 256;

/** Data TLP kinds: posted memory write with a 64-bit address (4DW header), or a completion with data (3DW). */
export type TlpOp = 'write' | 'read';

export const TLP_HEADER_BYTES: Record<TlpOp, number> = { write: 16, read: 12 };

/**
 * Bytes a data TLP adds to its payload on the wire. Non-FLIT: framing (Gen1/2: STP+END symbols,
 * 2 B; Gen3-5: STP token, 4 B) + sequence number 2 B + header + LCRC 4 B. FLIT mode: the header
 * only; sequence, CRC and framing live in the flit and are in FLIT_TLP_FRACTION. No ECRC.
 */
export function tlpOverheadBytes(gen: PcieLink['gen'], op: TlpOp = 'write'): number {
  const header = TLP_HEADER_BYTES[op];
  if (PCIE_GEN_SPEC[gen].flit) return header;
  const framing = gen <= 2 ? 2 : 4;
  return framing + 2 + header + 4;
}

/** Raw data rate of a link per direction, after line encoding (and the flit's TLP share), in bytes/s. */
export function pcieRawBytesPerSec(link: PcieLink): number {
  const g = PCIE_GEN_SPEC[link.gen];
  const flit = g.flit ? FLIT_TLP_FRACTION : 1;
  return (g.gtps * 1e9 * link.width * g.encoding * flit) / 8;
}

/** Payload bytes per TLP byte on the wire at this MPS. */
export function tlpEfficiency(gen: PcieLink['gen'], mps: number, op: TlpOp = 'write'): number {
  return mps / (mps + tlpOverheadBytes(gen, op));
}

export interface PcieLinkFigures {
  readonly gen: PcieLink['gen'];
  readonly width: number;
  readonly gtps: number;
  readonly encodingName: string;
  readonly rawBytesPerSec: number;
  readonly mps: number;
  readonly tlpOverhead: number;
  readonly efficiency: number;
  readonly goodputBytesPerSec: number;
}

/** Everything the formula uses, so reports can show their working. */
export function pcieLinkFigures(link: PcieLink, mps: number, op: TlpOp = 'write'): PcieLinkFigures {
  const g = PCIE_GEN_SPEC[link.gen];
  const raw = pcieRawBytesPerSec(link);
  const efficiency = tlpEfficiency(link.gen, mps, op);
  return {
    gen: link.gen,
    width: link.width,
    gtps: g.gtps,
    encodingName: g.encodingName,
    rawBytesPerSec: raw,
    mps,
    tlpOverhead: tlpOverheadBytes(link.gen, op),
    efficiency,
    goodputBytesPerSec: raw * efficiency,
  };
}

export type LinkLayer = 'ethernet' | 'infiniband';

/**
 * Per-packet bytes on the wire besides the RDMA payload.
 * RoCEv2: preamble+SFD 8, Ethernet header 14, IPv4 20, UDP 8, BTH 12, ICRC 4, FCS 4, inter-packet gap 12.
 * InfiniBand: LRH 8, BTH 12, ICRC 4, VCRC 2.
 * RETH (16 B, first packet of an RDMA WRITE) is per message, not per packet, and left out.
 */
export const PACKET_OVERHEAD_BYTES: Record<LinkLayer, number> = { ethernet: 82, infiniband: 26 };

/** Payload bytes/s of a NIC port or fabric link of `rate` bytes/s carrying MTU-sized packets. */
export function wireGoodput(rate: number, mtu: number, layer: LinkLayer): number {
  return (rate * mtu) / (mtu + PACKET_OVERHEAD_BYTES[layer]);
}

/** Wire bytes per payload byte: the cost a flow puts on a network link. */
export function wireCost(mtu: number, layer: LinkLayer): number {
  return (mtu + PACKET_OVERHEAD_BYTES[layer]) / mtu;
}
