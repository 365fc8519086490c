// Scenario 6 of kernel-semantics §4.6 end to end on real workers: an mlx5 HCA with TPH imports a
// VFIO BAR range whose dma-buf carries {ST 0x2a, PH 2}; its RDMA traffic through that MR carries
// the hint ({TH, PH, ST of the mkey's ST entry}) and the VFIO function, a TPH completer, counts
// what lands in its BAR per PH and per steering tag (docs/tph.md).
import { crc32 } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { TPH_STATS_ST_SLOTS } from '../../fabric/phys-map-layout.ts';
import {
  type IbvMr,
  type IbvPd,
  ibvPostSend,
  ibvRegDmabufMr,
  ibvRegMr,
  IbvSendFlags,
  IbvWcStatus,
  IbvWrOpcode,
  mmapAnonymous,
} from '../../uapi/verbs.ts';
import {
  O_RDWR,
  PciTphCompleter,
  vfioDeviceFeatureDmaBuf,
  vfioDeviceFeatureDmaBufTph,
  vfioDeviceOpen,
} from '../../uapi/vfio.ts';
import { type PciTphCap, PciTphLoc, PciTphStMode, pcieDisableTph } from '../pci/tph.ts';
import { vfioDevChecksum } from '../vfio/vfio-dev.ts';
import { vfioPciTphStats } from '../vfio/vfio-pci.ts';
import type { VfioPciCoreDevice } from '../vfio/vfio-pci-core.ts';
import { vfioPciProbe } from '../vfio/vfio-pci.ts';
import {
  ALL_ACCESS,
  MS,
  pattern,
  pollN,
  type QpEnd,
  type RdmaHost,
  rcPair,
  rdmaHost,
} from './fixtures/rdma-host.ts';
import { trackRdmaHost, trackVfio, vfioRdmaTeardown } from './fixtures/vfio-rdma.ts';
import { mlx5MkeyTph } from './mlx5/mlx5-mr.ts';

const BAR = 64 << 10;
const PAGE = 4096;
const LEN = 3000;
const AT = 100;
const SIG = IbvSendFlags.IBV_SEND_SIGNALED;
/** A TPH capability mlx5 keeps TPH with: device-specific mode, ST table in the capability. */
const capDs: PciTphCap = {
  modes: [PciTphStMode.NS, PciTphStMode.DS],
  extSt: false,
  stTable: PciTphLoc.CAP,
  stSize: 64,
};

afterEach(vfioRdmaTeardown);

interface Rig {
  h: RdmaHost;
  vdev: VfioPciCoreDevice;
  /** Loopback RC pair on mlx5_0 (one PD). */
  a: QpEnd;
  pd: IbvPd;
  /** Host memory source/sink: one page holding pattern(LEN, 5) at 0. */
  mem: ReturnType<typeof mmapAnonymous>;
  memMr: IbvMr;
  /** A dma-buf MR over page `page` of BAR0; with `tph` set on the dma-buf before the import. */
  barMr(page: number, tph?: { st: number; ph: number }): Promise<IbvMr>;
  /** One signalled RDMA op between memMr[0..LEN) and `mr` at AT; waits for its completion. */
  op(opcode: number, mr: IbvMr): Promise<void>;
}

/** mlx5_0 with TPH (TPH_ONLY requester) and vfio0, a TPH_ONLY completer with a 64 KiB BAR0. */
async function rig(): Promise<Rig> {
  const h = await rdmaHost({ nic: { tph: capDs } });
  trackRdmaHost(h);
  const vdev = vfioPciProbe(h.kernel, 'vfio0', {
    bars: [{ size: BAR }],
    tphCompleter: PciTphCompleter.TPH_ONLY,
  });
  trackVfio(vdev);
  const devFd = vfioDeviceOpen(h.proc, 'vfio0');
  const [a] = await rcPair(h.ctxs[0], h.ctxs[0]);
  const mem = mmapAnonymous(h.proc, PAGE);
  mem.bytes.set(pattern(LEN, 5));
  const memMr = ibvRegMr(a.pd, mem.addr, PAGE, ALL_ACCESS);
  let wrId = 1;
  return {
    h,
    vdev,
    a,
    pd: a.pd,
    mem,
    memMr,
    barMr: async (page, tph) => {
      const fd = await withDeadline(
        vfioDeviceFeatureDmaBuf(h.proc, devFd, {
          region_index: 0,
          open_flags: O_RDWR,
          flags: 0,
          nr_ranges: 1,
          dma_ranges: [{ offset: page * PAGE, length: PAGE }],
        }),
        MS,
        'export',
      );
      if (tph) {
        await withDeadline(
          vfioDeviceFeatureDmaBufTph(h.proc, devFd, { dmabuf_fd: fd, steering_tag: tph.st, ph: tph.ph }),
          MS,
          'tph set',
        );
      }
      return withDeadline(ibvRegDmabufMr(a.pd, 0, PAGE, 0, fd, ALL_ACCESS), MS, 'reg dma-buf mr');
    },
    op: async (opcode, mr) => {
      const id = wrId++;
      ibvPostSend(a.qp, {
        wr_id: id,
        opcode,
        send_flags: SIG,
        sg_list: [{ addr: mem.addr, length: LEN, lkey: memMr.lkey }],
        wr: { rdma: { remote_addr: AT, rkey: mr.rkey } },
      });
      const [wc] = await pollN(a.cq, 1, MS, `completion of wr ${id}`);
      expect([wc.wr_id, wc.status]).toEqual([id, IbvWcStatus.IBV_WC_SUCCESS]);
    },
  };
}

/** CRC-32 of BAR0 [off, off + len) as the VFIO device model computes it (its own worker). */
async function barCrc(vdev: VfioPciCoreDevice, off: number, len: number): Promise<number> {
  const c = await withDeadline(vfioDevChecksum(vdev, 0, off, len).done, MS, 'checksum');
  expect(c.status).toBe(0);
  return c.result >>> 0;
}

const zero = { runs: 0, bytes: 0 };

describe('mlx5 TPH on the data path (scenario 6)', () => {
  it('mlx5 - an RDMA WRITE into a VFIO BAR through a dma-buf MR with TPH (ST 0x2a, PH 2) carries the hint: the BAR counts its bytes under ST 0x2a and PH 2', async () => {
    const r = await rig();
    const mr = await r.barMr(0, { st: 0x2a, ph: 2 });
    expect(mlx5MkeyTph(r.h.nics[0], mr.rkey)).toMatchObject({ en: true, ph: 2, tag: 0x2a });
    expect(vfioPciTphStats(r.vdev, 0).hinted).toEqual(zero);
    await r.op(IbvWrOpcode.IBV_WR_RDMA_WRITE, mr);
    expect(await barCrc(r.vdev, AT, LEN)).toBe(crc32(pattern(LEN, 5)) >>> 0);
    const s = vfioPciTphStats(r.vdev, 0);
    expect(s.hinted.bytes).toBe(LEN);
    expect(s.hinted.runs).toBeGreaterThanOrEqual(1);
    expect(s.st[0x2a % TPH_STATS_ST_SLOTS]).toEqual(s.hinted);
    expect(s.ph[2]).toEqual(s.hinted);
    expect(s.st.filter((c) => c.runs !== 0)).toHaveLength(1);
    expect(s.unhinted).toEqual(zero);
  });

  it('mlx5 - the same WRITE through a dma-buf MR without TPH lands unhinted, and so does one after TPH was turned off on the HCA', async () => {
    const r = await rig();
    const plain = await r.barMr(1);
    expect(mlx5MkeyTph(r.h.nics[0], plain.rkey).en).toBe(false);
    await r.op(IbvWrOpcode.IBV_WR_RDMA_WRITE, plain);
    expect(await barCrc(r.vdev, PAGE + AT, LEN)).toBe(crc32(pattern(LEN, 5)) >>> 0);
    let s = vfioPciTphStats(r.vdev, 0);
    expect(s.unhinted.bytes).toBe(LEN);
    expect([s.hinted, s.ph[2], s.st[0x2a]]).toEqual([zero, zero, zero]);
    // an mkey with TPH, but the function's requester enable cleared: the device sends no hint
    const tph = await r.barMr(2, { st: 0x2a, ph: 2 });
    pcieDisableTph(r.h.nics[0].dev);
    await r.op(IbvWrOpcode.IBV_WR_RDMA_WRITE, tph);
    s = vfioPciTphStats(r.vdev, 0);
    expect(s.unhinted.bytes).toBe(2 * LEN);
    expect(s.hinted).toEqual(zero);
  });

  it('mlx5 - an RDMA READ of the BAR through the TPH MR carries the hint on its reads; the host-memory side counts nothing', async () => {
    const r = await rig();
    const mr = await r.barMr(3, { st: 0x2a, ph: 2 });
    r.mem.bytes.fill(0);
    await r.op(IbvWrOpcode.IBV_WR_RDMA_READ, mr);
    expect(crc32(r.mem.bytes.subarray(0, LEN)) >>> 0).toBe(await barCrc(r.vdev, 3 * PAGE + AT, LEN));
    const s = vfioPciTphStats(r.vdev, 0);
    expect(s.hinted.bytes).toBe(LEN);
    expect(s.st[0x2a % TPH_STATS_ST_SLOTS].bytes).toBe(LEN);
    expect(s.ph[2].bytes).toBe(LEN);
    expect(s.unhinted).toEqual(zero);
  });
});
