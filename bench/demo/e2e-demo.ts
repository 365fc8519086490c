/**
 * Demo part 2: the device data path on hosts booted from topology files. A GPU buffer is exported
 * as a dma-buf, registered as an MR on an mlx5 NIC, RDMA-written into another GPU's buffer and
 * into a VFIO device's BAR, and checked by the receiving device's own checksum job; once over the
 * direct P2P route, once bounced through system memory where P2P is refused.
 */
import { crc32 } from 'node:zlib';
import { onTrace } from '../../common/trace.ts';
import { liveWorkers } from '../../common/worker.ts';
import { bootHostFromTopology } from '../../nodes/host.ts';
import { O_RDWR } from '../../nodes/uapi/dma-buf.ts';
import { gpuGemCreate, gpuGemInfo, gpuPrimeHandleToFd, gpuSubmit, gpuWait } from '../../nodes/uapi/gpu.ts';
import type { Process } from '../../nodes/uapi/process.ts';
import {
  IbvSendFlags,
  IbvWcStatus,
  IbvWrOpcode,
  type IbvCq,
  type IbvWc,
  ibvOpenDevice,
  ibvPollCq,
  ibvPostSend,
  ibvRegDmabufMr,
} from '../../nodes/uapi/verbs.ts';
import { ALL_ACCESS, rcPair } from '../../nodes/uapi/verbs-rc.ts';
import { vfioDeviceChecksum, vfioDeviceFeatureDmaBuf, vfioDeviceOpen } from '../../nodes/uapi/vfio.ts';
import { loadTopologyFile } from '../../topology/load.ts';

const SIZE = 1 << 20;

export type Say = (line?: string) => void;
export type Check = (ok: boolean, what: string) => void;

async function gpuJob(p: Process, gpu: string, args: Parameters<typeof gpuSubmit>[2]): Promise<number> {
  const { job } = await gpuSubmit(p, gpu, args);
  const r = await gpuWait(p, gpu, job, 10_000);
  if (r.status !== 0) throw new Error(`${gpu} job failed with status ${r.status}`);
  return r.result;
}

async function pollOne(cq: IbvCq): Promise<IbvWc> {
  const wc: IbvWc[] = [];
  const end = performance.now() + 10_000;
  while (ibvPollCq(cq, 1, wc) === 0) {
    if (performance.now() > end) throw new Error('no RDMA completion within 10 s');
    await new Promise((r) => setImmediate(r));
  }
  return wc[0];
}

async function rdmaWrite(p: Process, srcFd: number, dstFd: number): Promise<IbvWc> {
  const ctx = ibvOpenDevice(p, 'mlx5_0');
  const [{ pd, cq, qp }] = await rcPair(ctx, ctx);
  const smr = await ibvRegDmabufMr(pd, 0, SIZE, 0, srcFd, ALL_ACCESS);
  const dmr = await ibvRegDmabufMr(pd, 0, SIZE, 0, dstFd, ALL_ACCESS);
  ibvPostSend(qp, {
    wr_id: 1,
    opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
    send_flags: IbvSendFlags.IBV_SEND_SIGNALED,
    sg_list: [{ addr: smr.addr, length: SIZE, lkey: smr.lkey }],
    wr: { rdma: { remote_addr: dmr.addr, rkey: dmr.rkey } },
  });
  return pollOne(cq);
}

function fillCrc(pattern: number): number {
  const b = new Uint8Array(SIZE);
  new DataView(b.buffer).setUint32(0, pattern, true);
  for (let i = 4; i < SIZE; i++) b[i] = b[i % 4];
  return crc32(b);
}

async function route(say: Say, check: Check, file: string, label: string, vfio: boolean): Promise<void> {
  const host = await bootHostFromTopology(loadTopologyFile(file), {
    ramBytes: 32 << 20,
    deviceMemoryCap: 8 << 20,
  });
  const maps: string[] = [];
  const off = onTrace('gpuPrimeAttach', (m) => maps.push(String((m as { mapType: unknown }).mapType)));
  try {
    for (const g of host.gpus.values()) await g.host.ready(10_000);
    const p = host.spawn('demo-e2e');
    say(
      `  ${file}: ${[...host.gpus.keys(), ...host.nics.keys(), ...host.vfio.keys()].join(', ')} booted as workers (${host.capped.length} device memories capped for emulation)`,
    );
    const src = await gpuGemCreate(p, 'gpu0', { size: SIZE });
    const dst = await gpuGemCreate(p, 'gpu1', { size: SIZE });
    await gpuJob(p, 'gpu0', { op: 'fill', handle: src, length: SIZE, pattern: 0x600d_f00d, width: 4 });
    const wc = await rdmaWrite(p, gpuPrimeHandleToFd(p, 'gpu0', src), gpuPrimeHandleToFd(p, 'gpu1', dst));
    const sum = await gpuJob(p, 'gpu1', { op: 'checksum', handle: dst, length: SIZE });
    say(
      `  gpu0 filled 1 MiB; mlx5_0 RDMA WRITE gpu0 -> gpu1: completion ${wc.status === IbvWcStatus.IBV_WC_SUCCESS ? 'IBV_WC_SUCCESS' : `status ${wc.status}`}`,
    );
    say(
      `  p2pdma map type gpu->NIC: ${[...new Set(maps)].join(', ')}; buffers now in ${gpuGemInfo(p, 'gpu0', src).placement} / ${gpuGemInfo(p, 'gpu1', dst).placement}`,
    );
    check(
      wc.status === IbvWcStatus.IBV_WC_SUCCESS && sum === fillCrc(0x600d_f00d),
      `${label}: gpu1's checksum job matches what gpu0 wrote (crc32 0x${sum.toString(16)})`,
    );
    if (vfio) {
      const vfd = vfioDeviceOpen(p, 'vfio0');
      const bar = await vfioDeviceFeatureDmaBuf(p, vfd, {
        region_index: 2,
        open_flags: O_RDWR,
        flags: 0,
        nr_ranges: 1,
        dma_ranges: [{ offset: 0, length: SIZE }],
      });
      const wc2 = await rdmaWrite(p, gpuPrimeHandleToFd(p, 'gpu0', src), bar);
      const bsum = await vfioDeviceChecksum(p, vfd, 2, 0, SIZE);
      check(
        wc2.status === IbvWcStatus.IBV_WC_SUCCESS && bsum === fillCrc(0x600d_f00d),
        `gpu0 -> vfio0 BAR2 over RDMA (through the host bridge): the device's checksum matches`,
      );
    }
  } finally {
    off();
    await host.shutdown();
  }
}

/** Part 2 of the demo; returns nothing, reports through say/check. */
export async function runE2eDemo(say: Say, check: Check): Promise<void> {
  say(
    '== 10. devices: GPU buffer -> dma-buf -> mlx5 MR -> RDMA WRITE -> GPU / VFIO BAR, on real device workers',
  );
  await route(
    say,
    check,
    'topology/examples/single-host.yaml',
    'direct P2P (GPUs and NIC under one PCIe switch)',
    true,
  );
  await route(
    say,
    check,
    'topology/examples/no-p2p-host.yaml',
    'bounce through system memory (host bridge not allow-listed)',
    false,
  );
  check(liveWorkers().length === 0, 'every device worker exited at shutdown');
}
