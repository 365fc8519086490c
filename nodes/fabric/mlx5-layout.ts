/**
 * The mlx5-style HCA's shared memory: what its driver (nodes/kernel/infiniband/mlx5/), its
 * userspace provider (nodes/uapi/verbs.ts) and its hardware model (nodes/devices/mlx5/) agree on.
 *
 * One "HCA context" SharedArrayBuffer per NIC, handed to the worker by the INIT_HCA command:
 *
 *   [Mlx5Ctl, 64 words][QP table: MLX5_MAX_QP x 16][CQ table: MLX5_MAX_CQ x 16]
 *   [mkey table: MLX5_MAX_MKEY x 32][ST table: MLX5_ST_ENTRIES words]
 *
 * plus one growable MTT SharedArrayBuffer (translation entries of every mkey), an event queue
 * ring (EQ, device -> kernel: page faults, CQ overruns, QP errors) and per-queue rings (SQ, RQ, CQ) made by
 * ring-layout.ts.
 *
 * DOC: mkeys and translation (mlx5 mkey context + MTT, reduced)
 * An mkey entry says who may use the key (PD, access bits), which IOVA range it covers and
 * where its translation entries are. The translation is a list of runs (KLM-like: start page
 * within the MR, DMA address, pages, bus flag) in the MTT SAB; XLT says whether the device may
 * use it. The kernel writes entries and runs with plain stores and publishes with
 * Atomics.store(STATE or XLT); the device loads STATE/XLT first. XLT = PRESENT implies STATE =
 * VALID: the kernel stores XLT = ZAPPED before STATE leaves VALID (revoke, dereg), so the device's
 * usual check is one load of XLT.
 *
 * DOC: zap (UMR with MLX5_IB_UPD_XLT_ZAP, synchronous)
 * The device announces each access in the ACTIVE word (mlx5ActiveWord: the source and
 * destination mkey indexes + 1 and a 6-bit access sequence), then loads XLT/STATE, copies at
 * most MLX5_DMA_CHUNK bytes, and stores ACTIVE = 0: two stores per access. The kernel zaps by
 * storing XLT = ZAPPED (or STATE), then loads ACTIVE and, while the value it loaded names the
 * mkey, waits until ACTIVE changes. Any change ends the access it saw: the device stores 0 at
 * its end, and the next access carries the next sequence. With sequentially consistent Atomics
 * the device either saw the zap, or its access was announced before the kernel looked and ends
 * before the zap returns. So after the zap no access reaches the old translation: the exporter
 * may then copy and free the old pages (kernel-semantics §7 rule 9).
 *
 * DOC: TPH stamping (kernel-semantics §4.3 rule 6, §4.6 scenario 6)
 * The function's ST table (TPH capability located) and its TPH Control requester enable live in
 * config space, which the device reads: the kernel mirrors each ST entry it writes
 * (pcie_tph_set_st_entry) into hcaStBase(index), and the requester type into
 * Mlx5Ctl.TPH_REQ_EN, with Atomics.store, before the mkey naming the index publishes STATE. A DMA
 * through an mkey with TPH_EN = 1 (and TPH_REQ_EN != 0) carries {TH = 1, PH = TPH_PH, ST = the
 * entry at TPH_ST_INDEX} (index 0: ST 0, PH only); without TPH_EN it carries no hint.
 */
import { layoutCheck } from './layout.ts';
import { type PhysArenaDescriptor, physArenaCtlAlloc } from './phys-arena.ts';

export const MLX5_HCA_MAGIC = 0x4d4c5835; // 'MLX5'
export const MLX5_HCA_VERSION = 1;

export const MLX5_MAX_QP = 1024;
export const MLX5_MAX_CQ = 1024;
export const MLX5_MAX_MKEY = 4096;
/** Largest piece one announced access copies before the device clears ACTIVE. */
export const MLX5_DMA_CHUNK = 256 << 10;

/** Control block: line 0 identity, line 1 the UAR doorbell, line 2 the EQ interrupt, line 3 DMA. */
export const Mlx5Ctl = {
  MAGIC: 0,
  VERSION: 1,
  /** Set by the kernel when the device died: userspace flushes in software (sw completions). */
  FATAL: 2,
  /** 1 when the context lives in the host arena (hcaCreate), so the device's wasm path can run. */
  IN_ARENA: 3,
  /** UAR doorbell (COUNT, NEED_WAKEUP): the device sleeps on it; userspace, driver, peers ring it. */
  UAR_DB: 16,
  UAR_DB_NEED_WAKEUP: 17,
  /** EQ doorbell = the device's interrupt for page-fault and error events. */
  EQ_DB: 32,
  EQ_DB_NEED_WAKEUP: 33,
  /** The access in progress (mlx5ActiveWord), 0 when none; see DOC: zap. */
  ACTIVE: 48,
  /** Statistics (device writes): WQEs executed, page faults raised, RNR NAKs sent. */
  STAT_WQES: 51,
  STAT_PAGE_FAULTS: 52,
  STAT_RNR_NAKS: 53,
  STAT_RETRIES: 54,
  /** TPH Control requester enable as the kernel last wrote it (PciTphReqType; 0: no TPH). */
  TPH_REQ_EN: 55,
  /** Statistics: WQEs the device's wasm data path executed (a subset of STAT_WQES). */
  STAT_FAST_WQES: 56,
} as const;
export const MLX5_CTL_WORDS = 64;
layoutCheck('Mlx5Ctl', Mlx5Ctl, MLX5_CTL_WORDS, 256);

// ACTIVE word: bits 0-12 source mkey index + 1, 13-25 destination index + 1 (0: none; indexes
// are < MLX5_MAX_MKEY = 4096), 26-31 the access sequence.
const ACTIVE_KEY_MASK = 0x1fff;
const ACTIVE_DST_SHIFT = 13;
const ACTIVE_SEQ_SHIFT = 26;

/** The ACTIVE word announcing an access of mkeys `src` and `dst` (-1: none), sequence `seq`. */
export function mlx5ActiveWord(src: number, dst: number, seq: number): number {
  return ((seq & 0x3f) << ACTIVE_SEQ_SHIFT) | ((dst + 1) << ACTIVE_DST_SHIFT) | (src + 1);
}

/** True if ACTIVE word `w` names mkey `idx` as the source or the destination of its access. */
export function mlx5ActiveNames(w: number, idx: number): boolean {
  return (w & ACTIVE_KEY_MASK) === idx + 1 || ((w >>> ACTIVE_DST_SHIFT) & ACTIVE_KEY_MASK) === idx + 1;
}

/** Per-QP context (16 words at hcaQpBase(qpn)). */
export const Mlx5QpCtx = {
  /** IbvQpState. The kernel writes it on modify; the device writes IBV_QPS_ERR on an error. */
  STATE: 0,
  /** 1 once the QP exists (CREATE_QP done), 0 after DESTROY_QP. */
  VALID: 1,
  /** Reserved (diagnostics). */
  SQ_DONE: 2,
} as const;
export const MLX5_QP_CTX_WORDS = 16;
layoutCheck('Mlx5QpCtx', Mlx5QpCtx, MLX5_QP_CTX_WORDS, 64);

/** Per-CQ context (16 words at hcaCqBase(cqn)): the completion event doorbell. */
export const Mlx5CqCtx = {
  /** Completion doorbell (COUNT, NEED_WAKEUP): rung by the device after writing CQEs. */
  DB: 0,
  DB_NEED_WAKEUP: 1,
  VALID: 2,
  /** Mlx5CqState, written by the device (Atomics.store): OVERRUN once a CQE found the CQ full. */
  STATE: 3,
  /**
   * Mlx5CqArm: ibv_req_notify_cq stores NEXT or SOLICITED; the device swaps it back to NONE
   * (compareExchange) when it raises the completion event, so one arm gives at most one event.
   */
  ARM: 4,
  /** Completion events raised (the device adds 1 per event, then rings DB). */
  EVENTS: 5,
} as const;

/** CQ arm states (mlx5 CQ doorbell arm command: MLX5_CQ_DB_REQ_NOT / _SOL). */
export const Mlx5CqArm = {
  NONE: 0,
  /** Any next completion raises an event. */
  NEXT: 1,
  /** Only a solicited receive completion or an error completion raises one. */
  SOLICITED: 2,
} as const;
export const MLX5_CQ_CTX_WORDS = 16;
layoutCheck('Mlx5CqCtx', Mlx5CqCtx, MLX5_CQ_CTX_WORDS, 64);

/**
 * CQ states. OVERRUN (IB spec CQ overrun, mlx5 CQ error): a completion found the CQ full; the
 * device writes no CQE into it again (until it is destroyed) and raises a CQ_ERROR EQE.
 */
export const Mlx5CqState = { OK: 0, OVERRUN: 1 } as const;

/** mkey context (32 words at hcaMkeyBase(index)). */
export const Mlx5Mkey = {
  /** Mlx5MkeyState; published last on create, first on destroy. */
  STATE: 0,
  /** The full key (index << 8 | variant) lkey/rkey must equal. */
  KEY: 1,
  PD: 2,
  /** IbvAccess bits. */
  ACCESS: 3,
  IOVA_LO: 4,
  IOVA_HI: 5,
  LEN_LO: 6,
  LEN_HI: 7,
  /** Mlx5Xlt: may the device use the runs? */
  XLT: 8,
  /** Mlx5Fault: page-fault handshake of an ODP mkey. */
  FAULT: 9,
  /** Mlx5MkeyFlags. */
  FLAGS: 10,
  /** First run (entry index) in the MTT SAB, capacity and runs in use. */
  MTT_BASE: 11,
  MTT_CAP: 12,
  MTT_NENT: 13,
  /** IOVA % PAGE_SIZE: the MR's first byte within its first page. */
  PAGE_OFF: 14,
  /** Zaps so far (diagnostics, traces). */
  ZAPS: 15,
  /**
   * mkc pcie_tph_en (1 bit): the device stamps TPH on its DMA through this mkey (TH = 1, the PH
   * below, the ST of ST table entry TPH_ST_INDEX). Written before STATE is published; 0 without.
   */
  TPH_EN: 16,
  /** mkc pcie_tph_ph: the 2-bit processing hint. */
  TPH_PH: 17,
  /**
   * mkc pcie_tph_steering_tag_index (8 bits): an index into the function's ST table, not the tag;
   * MLX5_MKC_PCIE_TPH_NO_STEERING_TAG_INDEX (0) means PH only, no steering tag.
   */
  TPH_ST_INDEX: 18,
  /**
   * Bumped by the kernel each time it programs the MTT, before it stores XLT = PRESENT: the
   * device's translation cache (mlx5-mkey.ts) keys on it, since a zap and re-map between two
   * accesses leaves XLT reading PRESENT both times. Never reset (an mkey index reused keeps it).
   */
  XLT_GEN: 19,
  // words 20..31: spare.
} as const;
export const MLX5_MKEY_WORDS = 32;
layoutCheck('Mlx5Mkey', Mlx5Mkey, MLX5_MKEY_WORDS, 128);
/** ST table entries mirrored in the HCA context (the mkey index is 8 bits). */
export const MLX5_ST_ENTRIES = 256;
/** Steering-tag index 0 of an mkey: no steering tag (PH only). */
export const MLX5_MKC_PCIE_TPH_NO_STEERING_TAG_INDEX = 0;

export const Mlx5MkeyState = { FREE: 0, VALID: 1, REVOKED: 2 } as const;
export const Mlx5Xlt = { ZAPPED: 0, PRESENT: 1 } as const;
export const Mlx5Fault = { NONE: 0, PENDING: 1, FAILED: 2 } as const;
/** ODP: a zapped translation raises a page fault (else an access to it is an error). */
export const Mlx5MkeyFlags = { ODP: 1 } as const;

/** One translation run in the MTT SAB (4 words). */
export const Mlx5MttRun = {
  /** First page of the run, counted from the MR's first page. */
  START_PAGE: 0,
  /** DMA address low word (page aligned) with MLX5_MTT_BUS in bit 0. */
  DMA_LO: 1,
  DMA_HI: 2,
  PAGES: 3,
} as const;
export const MLX5_MTT_RUN_WORDS = 4;
/** DMA_LO bit 0: the run's address is a PCI bus address (P2PDMA BUS_ADDR), not an IOVA. */
export const MLX5_MTT_BUS = 1;
export const MLX5_MTT_HDR_WORDS = 16;
export const MLX5_MTT_MAX_BYTES = 256 << 20;

/** Event queue entry (one 64-byte ring slot). */
export const Mlx5Eqe = {
  TYPE: 0,
  MKEY_INDEX: 1,
  QPN: 2,
  ADDR_LO: 3,
  ADDR_HI: 4,
  LEN: 5,
  /** Mlx5EqeFlags. */
  FLAGS: 6,
  /** CQ_ERROR: the CQ that overran. */
  CQN: 7,
} as const;
/**
 * PAGE_FAULT: an ODP mkey needs its translation (MKEY_INDEX, QPN, ADDR, LEN, FLAGS).
 * QP_ERROR: QP `QPN` entered the error state because a completion it needed was lost (its CQ
 * overran): IBV_EVENT_QP_FATAL. CQ_ERROR: CQ `CQN` overran: IBV_EVENT_CQ_ERR.
 */
export const Mlx5EqeType = { PAGE_FAULT: 1, QP_ERROR: 2, CQ_ERROR: 3 } as const;
export const Mlx5EqeFlags = { REQUESTER: 1, WRITE: 2 } as const;

/**
 * The ICM block (words): the call's arguments and results, and the translation cache's mirror.
 * Written by the device's mlx5-fast.ts before the call, read back after; the cache by
 * MkeyEngine.fill. The kernel allocates it in the host arena and hands it over at INIT_HCA (as
 * mlx5 gives firmware its ICM pages); only the device uses it.
 */
export const Mlx5Icm = {
  /** SQ ring: byte address in the arena, slots - 1, consumer position (in/out). */
  SQ: 0,
  SQ_MASK: 1,
  SQ_TAIL: 2,
  /** Send CQ ring: byte address, slots - 1, producer position and cached TAIL (in/out). */
  CQ: 3,
  CQ_MASK: 4,
  CQ_HEAD: 5,
  CQ_TAILC: 6,
  QPN: 7,
  PD: 8,
  /** The responder QP's PD and qp_access_flags. */
  R_PD: 9,
  R_ACCESS: 10,
  /** The ACTIVE word's access sequence (in/out). */
  SEQ: 11,
  /** CQEs written (out). */
  CQES: 12,
  /** Byte address of the device's DevCtx INVAL word (the entry is in the arena too). */
  INVAL_AT: 13,
  /** The HCA context's byte address. */
  HCA: 14,
  /** Translation cache entries: source at CACHE_SRC, destination at CACHE_DST (CacheEntry). */
  CACHE_SRC: 16,
  CACHE_DST: 24,
} as const;
export const MLX5_ICM_WORDS = 32;

/** One translation-cache entry in the ICM (mlx5-mkey.ts XltCache): words from its base. */
export const CacheEntry = {
  /** mkey index, -1: empty (or not in this arena). */
  IDX: 0,
  GEN: 1,
  INVAL: 2,
  /** Byte address in the arena of iova I0. */
  OFF: 3,
  /** [I0, I1) as u64 (low word first). */
  I0_LO: 4,
  I1_LO: 6,
} as const;

/** Firmware command opcodes on the device queue (model range 1..0xef). */
export const Mlx5Cmd = {
  INIT_HCA: 1,
  CREATE_CQ: 2,
  DESTROY_CQ: 3,
  CREATE_QP: 4,
  MODIFY_QP: 5,
  DESTROY_QP: 6,
} as const;
export type Mlx5Cmd = (typeof Mlx5Cmd)[keyof typeof Mlx5Cmd];

export const MLX5_HCA_WORDS =
  MLX5_CTL_WORDS +
  MLX5_MAX_QP * MLX5_QP_CTX_WORDS +
  MLX5_MAX_CQ * MLX5_CQ_CTX_WORDS +
  MLX5_MAX_MKEY * MLX5_MKEY_WORDS +
  MLX5_ST_ENTRIES;

/** Word index of QP `qpn`'s context. */
export function hcaQpBase(qpn: number): number {
  return MLX5_CTL_WORDS + qpn * MLX5_QP_CTX_WORDS;
}

/** Word index of CQ `cqn`'s context. */
export function hcaCqBase(cqn: number): number {
  return MLX5_CTL_WORDS + MLX5_MAX_QP * MLX5_QP_CTX_WORDS + cqn * MLX5_CQ_CTX_WORDS;
}

/** Word index of mkey `index`'s context. */
export function hcaMkeyBase(index: number): number {
  return (
    MLX5_CTL_WORDS +
    MLX5_MAX_QP * MLX5_QP_CTX_WORDS +
    MLX5_MAX_CQ * MLX5_CQ_CTX_WORDS +
    index * MLX5_MKEY_WORDS
  );
}

/** Word index of ST table entry `index` (0..MLX5_ST_ENTRIES - 1; DOC: TPH stamping). */
export function hcaStBase(index: number): number {
  return (
    MLX5_CTL_WORDS +
    MLX5_MAX_QP * MLX5_QP_CTX_WORDS +
    MLX5_MAX_CQ * MLX5_CQ_CTX_WORDS +
    MLX5_MAX_MKEY * MLX5_MKEY_WORDS +
    index
  );
}

/** mkey index of a key (lkey/rkey: index << 8 | variant). */
export function mlx5KeyIndex(key: number): number {
  return (key >>> 8) & 0xffffff;
}

/**
 * Allocate a zeroed HCA context with its header published: in the host arena when there is one
 * with room (so the device's wasm data path reaches it, mlx5-fast.ts), else a SAB of its own.
 * Called by: the mlx5 driver's probe, kernel thread.
 */
export function hcaCreate(arena: PhysArenaDescriptor | null = null): Int32Array {
  const inArena = arena !== null ? physArenaCtlAlloc(arena, MLX5_HCA_WORDS * 4) : null;
  const w = inArena ?? new Int32Array(new SharedArrayBuffer(MLX5_HCA_WORDS * 4));
  w[Mlx5Ctl.VERSION] = MLX5_HCA_VERSION;
  w[Mlx5Ctl.IN_ARENA] = inArena !== null ? 1 : 0;
  // publish the header last: a side that loads MAGIC sees the rest initialised.
  Atomics.store(w, Mlx5Ctl.MAGIC, MLX5_HCA_MAGIC);
  return w;
}

/** Check an HCA context (hcaCreate's window); Throws: RangeError (a setup bug). */
export function hcaCheck(w: Int32Array): Int32Array {
  if (!(w instanceof Int32Array) || !(w.buffer instanceof SharedArrayBuffer) || w.length < MLX5_HCA_WORDS) {
    throw new RangeError('mlx5: not an HCA context');
  }
  if (Atomics.load(w, Mlx5Ctl.MAGIC) !== MLX5_HCA_MAGIC || w[Mlx5Ctl.VERSION] !== MLX5_HCA_VERSION) {
    throw new RangeError('mlx5: HCA context magic/version mismatch');
  }
  return w;
}

/** A growable MTT SAB: `initialRuns` runs now, up to MLX5_MTT_MAX_BYTES. */
export function mttCreate(initialRuns = 1024): SharedArrayBuffer {
  const bytes = (MLX5_MTT_HDR_WORDS + initialRuns * MLX5_MTT_RUN_WORDS) * 4;
  return new SharedArrayBuffer(bytes, { maxByteLength: MLX5_MTT_MAX_BYTES });
}

/** Word index of MTT run `entry`. */
export function mttRunBase(entry: number): number {
  return MLX5_MTT_HDR_WORDS + entry * MLX5_MTT_RUN_WORDS;
}
