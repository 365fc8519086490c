/**
 * The wire between two RDMA ports: what carries RC packets from one NIC worker to another. A
 * NIC model sees only the WireLink interface below, so the shared-memory link used between two
 * NICs of one host can later be replaced by a TCP link between hosts (SimBricks' dist/ proxies:
 * a device cannot tell a remote peer from a local one).
 *
 * A link is bidirectional and private to one connected QP pair. Each direction is a packet ring
 * (ring-layout.ts: 64-byte header slots, WirePkt words) plus a payload byte ring: a packet with
 * payload owns `len` contiguous bytes of the payload ring from DATA_OFF; releasing the packet
 * frees its bytes up to DATA_END (packets are released in order, so the payload ring is FIFO).
 * The sender copies payload straight from memory into the payload ring by DMA (dmaRead), the
 * receiver straight out of it (dmaWrite): one copy per side, no staging buffer.
 *
 * Waking: after publishing a batch the sender rings the receiving NIC's UAR doorbell (the one
 * word the NIC worker sleeps on), never its own.
 *
 * Device side and kernel side both import this file; it imports only fabric/.
 */
import { doorbellRing } from './doorbell.ts';
import { layoutCheck } from './layout.ts';
import { RingConsumer, RingProducer } from './ring.ts';
import { ringCreate } from './ring-layout.ts';

/** Packet header words (one ring slot). */
export const WirePkt = {
  /** WireOp. */
  OP: 0,
  PSN: 1,
  /** Flags: WIRE_FIRST / WIRE_LAST segment of a message. */
  FLAGS: 2,
  /** Payload bytes of this packet (0 for ACK/NAK/READ request). */
  LEN: 3,
  DATA_OFF: 4,
  /** Payload ring position after this packet: the receiver stores it as the ring's tail. */
  DATA_END: 5,
  RADDR_LO: 6,
  RADDR_HI: 7,
  RKEY: 8,
  IMM: 9,
  /** Length of the whole message (requests) or of the READ (READ request). */
  MSG_LEN: 10,
  /** Offset of this segment in its message. */
  MSG_OFF: 11,
  /** NAK syndrome (WireNak). */
  SYNDROME: 12,
} as const;
layoutCheck('WirePkt', { ...WirePkt, SEQ: 15 }, 16, 64);

/**
 * ATOMIC_REQ (IBA CmpSwap / FetchAdd with its AtomicETH): one packet, one PSN, no payload. RADDR
 * and RKEY as for a READ request, MSG_LEN 8. The operands are u64s as u32 halves, low first, in
 * words a single-packet atomic does not otherwise use: IMM, MSG_OFF, SYNDROME (NAKs only) and
 * the two spare words 13-14. FETCH_AND_ADD uses COMPARE_ADD only.
 */
export const WireAtomicReq = {
  /** The verb: IBV_WR_ATOMIC_CMP_AND_SWP or IBV_WR_ATOMIC_FETCH_AND_ADD. */
  ATOMIC_OP: 12,
  COMPARE_ADD_LO: 13,
  COMPARE_ADD_HI: 14,
  SWAP_LO: 9,
  SWAP_HI: 11,
} as const;
/** ATOMIC_RESP (IBA Atomic Acknowledge with its AtomicAckETH): the original value, lo and hi. */
export const WireAtomicResp = { ORIG_LO: 13, ORIG_HI: 14 } as const;
{
  const { IMM: _imm, MSG_OFF: _off, SYNDROME: _syn, ...rest } = WirePkt;
  layoutCheck('WirePkt ATOMIC_REQ', { ...rest, ...WireAtomicReq, SEQ: 15 }, 16, 64);
  layoutCheck('WirePkt ATOMIC_RESP', { ...WirePkt, ...WireAtomicResp, SEQ: 15 }, 16, 64);
}

/**
 * Packet opcodes. Requests are below READ_RESP, responses to our own requests at or above it
 * (mlx5-wire-responder.ts wireReceive dispatches on that).
 */
export const WireOp = {
  SEND: 1,
  SEND_IMM: 2,
  WRITE: 3,
  WRITE_IMM: 4,
  READ_REQ: 5,
  ATOMIC_REQ: 6,
  READ_RESP: 7,
  ACK: 8,
  NAK: 9,
  ATOMIC_RESP: 10,
} as const;
export const WIRE_FIRST = 1;
export const WIRE_LAST = 2;
/** The last segment of a SEND/SEND_IMM/WRITE_IMM whose WQE had IBV_SEND_SOLICITED (the BTH SE bit). */
export const WIRE_SOLICITED = 4;
/** NAK syndromes (IBA AETH NAK codes, reduced). */
export const WireNak = { RNR: 1, REM_ACCESS: 2, REM_INV_REQ: 3, REM_OP: 4 } as const;

/** What a NIC model uses to send and receive packets. One thread per end. */
export interface WireLink {
  /**
   * Claim the next packet with `len` payload bytes (0 allowed). Returns the header slot's word
   * index in txWords, or -1 when the link has no room (retry later; never waits). The payload
   * goes to txData at txDataOff. Calling it again before txCommit() re-claims.
   */
  txClaim(len: number): number;
  readonly txWords: Int32Array;
  readonly txData: Uint8Array;
  /** Payload offset of the claimed packet. */
  readonly txDataOff: number;
  /** Publish the claimed packet (header words written). */
  txCommit(): void;
  /** Wake the receiver if anything was committed since the last flush. */
  txFlush(): void;
  /** Header slot of the oldest unreleased received packet, or -1. */
  rxPeek(): number;
  readonly rxWords: Int32Array;
  readonly rxData: Uint8Array;
  /** Release the packet rxPeek() returned, with its payload. */
  rxRelease(): void;
}

/** Payload ring header words (the payload bytes follow the header). */
const DataHdr = { TAIL: 0 } as const;
const DATA_HDR_BYTES = 64;

/** One direction of a shared-memory link. */
export interface ShmWireDir {
  ring: SharedArrayBuffer;
  data: SharedArrayBuffer;
}

/** One end as handed to a NIC worker (structured-cloneable). */
export interface ShmWireEndDesc {
  kind: 'shm';
  tx: ShmWireDir;
  rx: ShmWireDir;
  /** The receiving NIC's doorbell: word `index` (COUNT, NEED_WAKEUP) of `sab`. */
  peerWake: { sab: SharedArrayBuffer; index: number };
}

export interface ShmWireOptions {
  /** Packet slots per direction (power of two). Default 256. */
  slots?: number;
  /** Payload bytes per direction (power of two). Default 4 MiB. */
  dataBytes?: number;
}

function dirCreate(slots: number, dataBytes: number): ShmWireDir {
  return { ring: ringCreate(slots), data: new SharedArrayBuffer(DATA_HDR_BYTES + dataBytes) };
}

/**
 * Create a link between two NIC ports: the end for A (waking `wakeB` when it sends) and the end
 * for B. Called by: the kernel's ib fabric when two QPs on different NICs connect (main thread).
 * Throws: RangeError for sizes that are not powers of two (a setup bug).
 */
export function shmWireCreatePair(
  wakeA: { sab: SharedArrayBuffer; index: number },
  wakeB: { sab: SharedArrayBuffer; index: number },
  opts: ShmWireOptions = {},
): [ShmWireEndDesc, ShmWireEndDesc] {
  const slots = opts.slots ?? 256;
  const dataBytes = opts.dataBytes ?? 4 << 20;
  if (!(Number.isInteger(dataBytes) && dataBytes >= 4096 && (dataBytes & (dataBytes - 1)) === 0)) {
    throw new RangeError(`shmWireCreatePair: dataBytes ${dataBytes} must be a power of two >= 4096`);
  }
  const ab = dirCreate(slots, dataBytes);
  const ba = dirCreate(slots, dataBytes);
  return [
    { kind: 'shm', tx: ab, rx: ba, peerWake: wakeB },
    { kind: 'shm', tx: ba, rx: ab, peerWake: wakeA },
  ];
}

/** Largest payload one packet of a link with `dataBytes` of payload ring may carry. */
export function shmWireMaxPayload(dataBytes: number): number {
  return dataBytes >>> 2;
}

/** The worker-side WireLink over shared memory. */
export class ShmWireLink implements WireLink {
  readonly txWords: Int32Array;
  readonly txData: Uint8Array;
  txDataOff = 0;
  readonly rxWords: Int32Array;
  readonly rxData: Uint8Array;
  /** Largest payload per packet (a quarter of the payload ring). */
  readonly maxPayload: number;
  private readonly tx: RingProducer;
  private readonly rx: RingConsumer;
  private readonly txHdr: Int32Array;
  private readonly rxHdr: Int32Array;
  private readonly size: number;
  private readonly wake: Int32Array;
  private readonly wakeIndex: number;
  // payload ring: next free position and the tail as last loaded (u32 positions, | 0 arithmetic)
  private dataHead = 0;
  private dataTailCache = 0;
  private claimEnd = 0;
  private dirty = false;

  constructor(d: ShmWireEndDesc) {
    this.tx = new RingProducer(d.tx.ring);
    this.rx = new RingConsumer(d.rx.ring);
    this.txWords = this.tx.words;
    this.rxWords = this.rx.words;
    this.txHdr = new Int32Array(d.tx.data, 0, DATA_HDR_BYTES >> 2);
    this.rxHdr = new Int32Array(d.rx.data, 0, DATA_HDR_BYTES >> 2);
    this.txData = new Uint8Array(d.tx.data, DATA_HDR_BYTES);
    this.rxData = new Uint8Array(d.rx.data, DATA_HDR_BYTES);
    this.size = this.txData.length;
    this.maxPayload = shmWireMaxPayload(this.size);
    this.wake = new Int32Array(d.peerWake.sab);
    this.wakeIndex = d.peerWake.index;
    // a link may be re-attached after a worker restart: continue from the published tail.
    this.dataHead = this.dataTailCache = Atomics.load(this.txHdr, DataHdr.TAIL);
  }

  txClaim(len: number): number {
    if (len > this.maxPayload) return -1;
    const s = this.tx.claim();
    if (s < 0) return -1;
    const size = this.size;
    let pos = this.dataHead;
    if (len > 0) {
      const off = (pos >>> 0) % size;
      // a payload never wraps: skip the tail of the ring if it does not fit there.
      if (off + len > size) pos = (pos + (size - off)) | 0;
      const end = (pos + len) | 0;
      if (((end - this.dataTailCache) | 0) > size) {
        // acquire: the receiver stored TAIL after it finished reading those bytes.
        this.dataTailCache = Atomics.load(this.txHdr, DataHdr.TAIL);
        if (((end - this.dataTailCache) | 0) > size) return -1;
      }
    }
    this.txDataOff = (pos >>> 0) % size;
    this.claimEnd = (pos + len) | 0;
    const w = this.txWords;
    w[s + WirePkt.LEN] = len;
    w[s + WirePkt.DATA_OFF] = this.txDataOff;
    w[s + WirePkt.DATA_END] = this.claimEnd;
    return s;
  }

  txCommit(): void {
    this.dataHead = this.claimEnd;
    // publish: header words and payload bytes were plain stores; SEQ orders them.
    this.tx.commit();
    this.dirty = true;
  }

  txFlush(): void {
    if (!this.dirty) return;
    this.dirty = false;
    this.tx.flush();
    doorbellRing(this.wake, this.wakeIndex);
  }

  rxPeek(): number {
    return this.rx.peek();
  }

  rxRelease(): void {
    const s = this.rx.peek();
    if (s < 0) return;
    // free the payload before the slot: the sender checks bytes and slots separately.
    Atomics.store(this.rxHdr, DataHdr.TAIL, this.rxWords[s + WirePkt.DATA_END]);
    this.rx.release();
  }
}

/** Build the worker-side link for a descriptor. Called by: the NIC model when a QP connects. */
export function wireLinkOpen(d: ShmWireEndDesc): WireLink & { maxPayload: number } {
  return new ShmWireLink(d);
}
