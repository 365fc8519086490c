// End to end on real device workers, booted from topology files: a GPU buffer exported as a
// dma-buf, registered as an MR on an mlx5 NIC, RDMA-written into another GPU's buffer and into a
// VFIO device's BAR, completed (CQE), and verified by the receiving device's own checksum job.
// The direct P2P route (GPUs and NIC under one switch: BUS_ADDR) and the bounce through system
// memory (host bridge not on the P2PDMA allow-list: NOT_SUPPORTED).
import { crc32 } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../common/deadline.ts';
import { onTrace } from '../common/trace.ts';
import { liveWorkers } from '../common/worker.ts';
import { type Host, bootHostFromTopology } from '../nodes/host.ts';
import { O_RDWR } from '../nodes/uapi/dma-buf.ts';
import { gpuGemCreate, gpuGemInfo, gpuPrimeHandleToFd, gpuSubmit, gpuWait } from '../nodes/uapi/gpu.ts';
import type { Process } from '../nodes/uapi/process.ts';
import { IbvSendFlags, IbvWcStatus, IbvWrOpcode, ibvPostSend, ibvRegDmabufMr } from '../nodes/uapi/verbs.ts';
import { vfioDeviceChecksum, vfioDeviceFeatureDmaBuf, vfioDeviceOpen } from '../nodes/uapi/vfio.ts';
import { ALL_ACCESS, pollN, rcPair } from '../nodes/kernel/infiniband/fixtures/rdma-host.ts';
import { ibvOpenDevice } from '../nodes/uapi/verbs.ts';
import { loadTopologyFile } from '../topology/load.ts';

const MS = 5_000;
const SIZE = 256 << 10;
let host: Host | null = null;

afterEach(async () => {
  await host?.shutdown();
  host = null;
  expect(liveWorkers()).toHaveLength(0);
});

async function boot(file: string): Promise<{ h: Host; p: Process }> {
  host = await withDeadline(
    bootHostFromTopology(loadTopologyFile(file), { ramBytes: 32 << 20, deviceMemoryCap: 8 << 20 }),
    MS,
    `boot ${file}`,
  );
  for (const g of host.gpus.values()) await g.host.ready(MS);
  return { h: host, p: host.spawn('e2e') };
}

/** A GPU buffer filled by a GPU compute job; returns its handle and the job's checksum. */
async function gpuBuffer(p: Process, gpu: string, pattern: number | null): Promise<number> {
  const h = await gpuGemCreate(p, gpu, { size: SIZE });
  if (pattern !== null) {
    const { job } = await gpuSubmit(p, gpu, { op: 'fill', handle: h, length: SIZE, pattern, width: 4 });
    expect((await gpuWait(p, gpu, job, MS)).status).toBe(0);
  }
  return h;
}

async function gpuChecksum(p: Process, gpu: string, h: number): Promise<number> {
  const { job } = await gpuSubmit(p, gpu, { op: 'checksum', handle: h, length: SIZE });
  const r = await gpuWait(p, gpu, job, MS);
  expect(r.status).toBe(0);
  return r.result;
}

/** Register both dma-bufs on mlx5_0, RDMA WRITE src -> dst on a loopback RC pair, return the CQE. */
async function rdmaWrite(p: Process, srcFd: number, dstFd: number, length: number) {
  const ctx = ibvOpenDevice(p, 'mlx5_0');
  const [a, b] = await rcPair(ctx, ctx);
  const smr = await withDeadline(ibvRegDmabufMr(a.pd, 0, length, 0, srcFd, ALL_ACCESS), MS, 'reg src MR');
  const dmr = await withDeadline(ibvRegDmabufMr(b.pd, 0, length, 0, dstFd, ALL_ACCESS), MS, 'reg dst MR');
  ibvPostSend(a.qp, {
    wr_id: 7,
    opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
    send_flags: IbvSendFlags.IBV_SEND_SIGNALED,
    sg_list: [{ addr: smr.addr, length, lkey: smr.lkey }],
    wr: { rdma: { remote_addr: dmr.addr, rkey: dmr.rkey } },
  });
  const [wc] = await pollN(a.cq, 1, MS, 'RDMA WRITE completion');
  return wc;
}

function fillCrc(pattern: number, length: number): number {
  const b = new Uint8Array(length);
  new DataView(b.buffer).setUint32(0, pattern, true);
  for (let i = 4; i < length; i++) b[i] = b[i % 4];
  return crc32(b);
}

describe('e2e: GPU -> NIC -> GPU / VFIO through dma-buf MRs', () => {
  it('e2e - P2P route: GPU0 VRAM -> RDMA WRITE -> GPU1 VRAM, by bus address through the switch, verified by a GPU checksum', async () => {
    const { p } = await boot('topology/examples/single-host.yaml');
    const maps: string[] = [];
    const off = onTrace('gpuPrimeAttach', (m) => maps.push(String((m as { mapType: unknown }).mapType)));
    try {
      const src = await gpuBuffer(p, 'gpu0', 0xc0ffee11);
      const dst = await gpuBuffer(p, 'gpu1', null);
      const wc = await rdmaWrite(
        p,
        gpuPrimeHandleToFd(p, 'gpu0', src),
        gpuPrimeHandleToFd(p, 'gpu1', dst),
        SIZE,
      );
      expect(wc).toMatchObject({ wr_id: 7, status: IbvWcStatus.IBV_WC_SUCCESS });
      const want = await gpuChecksum(p, 'gpu0', src);
      expect(want).toBe(fillCrc(0xc0ffee11, SIZE));
      expect(await gpuChecksum(p, 'gpu1', dst)).toBe(want);
      // Both buffers stayed in VRAM: the NIC reached them peer to peer.
      expect([gpuGemInfo(p, 'gpu0', src).placement, gpuGemInfo(p, 'gpu1', dst).placement]).toEqual([
        'vram',
        'vram',
      ]);
    } finally {
      off();
    }
    expect(maps).toEqual(['BUS_ADDR', 'BUS_ADDR']);
  });

  it('e2e - bounce route: with P2P NOT_SUPPORTED both buffers move to system memory and the data still arrives intact', async () => {
    const { p } = await boot('topology/examples/no-p2p-host.yaml');
    const src = await gpuBuffer(p, 'gpu0', 0x5a5aa5a5);
    const dst = await gpuBuffer(p, 'gpu1', null);
    const wc = await rdmaWrite(
      p,
      gpuPrimeHandleToFd(p, 'gpu0', src),
      gpuPrimeHandleToFd(p, 'gpu1', dst),
      SIZE,
    );
    expect(wc.status).toBe(IbvWcStatus.IBV_WC_SUCCESS);
    expect([gpuGemInfo(p, 'gpu0', src).placement, gpuGemInfo(p, 'gpu1', dst).placement]).toEqual([
      'system',
      'system',
    ]);
    expect(await gpuChecksum(p, 'gpu1', dst)).toBe(fillCrc(0x5a5aa5a5, SIZE));
  });

  it('e2e - GPU0 VRAM -> RDMA WRITE -> a VFIO device BAR (through the host bridge), verified by the device checksum', async () => {
    const { p } = await boot('topology/examples/single-host.yaml');
    const src = await gpuBuffer(p, 'gpu0', 0x01020304);
    const vfd = vfioDeviceOpen(p, 'vfio0');
    const barFd = await vfioDeviceFeatureDmaBuf(p, vfd, {
      region_index: 2,
      open_flags: O_RDWR,
      flags: 0,
      nr_ranges: 1,
      dma_ranges: [{ offset: 0, length: SIZE }],
    });
    const wc = await rdmaWrite(p, gpuPrimeHandleToFd(p, 'gpu0', src), barFd, SIZE);
    expect(wc.status).toBe(IbvWcStatus.IBV_WC_SUCCESS);
    expect(await vfioDeviceChecksum(p, vfd, 2, 0, SIZE)).toBe(fillCrc(0x01020304, SIZE));
  });
});
