// The edu DMA engine end to end: a real device worker, a HostKernel IOMMU domain, buffers
// mapped with the DMA API or as a system-heap dma-buf, and the queue, completion and fence
// protocol of device-host.ts. Lifecycle and failure paths: device-host.test.ts.
import { crc32 } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { Errno } from '../../../common/errno.ts';
import { DmaAccess, IommuFaultReason } from '../../fabric/iommu-layout.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import {
  dmaBufAttach,
  dmaBufDetach,
  dmaBufMapAttachmentUnlocked,
  dmaBufPut,
  dmaBufUnmapAttachmentUnlocked,
} from '../dma-buf/dma-buf.ts';
import { dmaFenceGetStatus, dmaFenceWaitTimeout } from '../dma-buf/dma-fence.ts';
import { dmaHeapBufferAlloc } from '../dma-buf/heaps/dma-heap.ts';
import type { SystemHeapBuffer } from '../dma-buf/heaps/system-heap.ts';
import { DmaDataDirection } from '../dma-buf/scatterlist.ts';
import { EduOp, eduChecksum, eduCopy, eduFill, eduSubmit } from './edu.ts';
import { eduHost, eduHostsTeardown, MS, START_MS } from './fixtures/edu-host.ts';

afterEach(eduHostsTeardown);

describe('edu', () => {
  it('edu - copy through the IOMMU completes and its fence signals', async () => {
    const { edu, iova, bytes } = eduHost();
    await edu.host.ready(START_MS);
    const len = 3 * PAGE_SIZE + 100; // crosses pages, ends mid-page
    for (let i = 0; i < len; i++) bytes[i] = (i * 7) & 0xff;
    const job = eduCopy(edu, iova, iova + 4 * PAGE_SIZE, len);
    const c = await withDeadline(job.done, MS, 'copy completion');
    expect(c).toMatchObject({ status: 0, opcode: EduOp.COPY, synthetic: false, seqno: job.fence.seqno });
    expect(await dmaFenceWaitTimeout(job.fence, MS)).toBeGreaterThan(0);
    expect(dmaFenceGetStatus(job.fence)).toBe(1);
    expect(bytes.subarray(4 * PAGE_SIZE, 4 * PAGE_SIZE + len)).toEqual(bytes.subarray(0, len));
    expect(bytes[4 * PAGE_SIZE + len]).toBe(0);
  });

  it('edu - fill writes the byte pattern and a batch of small fills completes in order', async () => {
    const { edu, iova, bytes } = eduHost();
    await edu.host.ready(START_MS);
    const fences = edu.host.submitBatch(
      Array.from({ length: 128 }, (_, i) => ({ opcode: EduOp.FILL, dst: iova + i * 64, len: 64, arg0: i })),
    );
    const last = fences[fences.length - 1];
    expect(await dmaFenceWaitTimeout(last, MS)).toBeGreaterThan(0);
    expect(fences.map((f) => dmaFenceGetStatus(f))).toEqual(fences.map(() => 1));
    for (let i = 0; i < 128; i++) expect([bytes[i * 64], bytes[i * 64 + 63]]).toEqual([i, i]);
    const big = eduFill(edu, iova + PAGE_SIZE * 2, PAGE_SIZE * 3, 0xa5);
    expect((await withDeadline(big.done, MS, 'fill')).status).toBe(0);
    expect(bytes.subarray(PAGE_SIZE * 2, PAGE_SIZE * 5).every((b) => b === 0xa5)).toBe(true);
  });

  it('edu - checksum of a system-heap dma-buf mapped for the device matches zlib crc32', async () => {
    const { kernel, edu } = eduHost();
    const len = 5 * PAGE_SIZE;
    const buf = dmaHeapBufferAlloc(kernel.heaps.find('system'), len, 0, 0);
    const data = Uint8Array.from({ length: len }, (_, i) => (i * 31 + 5) & 0xff);
    (buf.priv as SystemHeapBuffer).pages.write(0, data);
    const attach = await dmaBufAttach(buf, edu.dev);
    const sgt = await dmaBufMapAttachmentUnlocked(attach, DmaDataDirection.TO_DEVICE);
    try {
      expect(sgt.entries).toHaveLength(1); // the IOMMU merged the scattered pages into one IOVA range
      const job = eduChecksum(edu, sgt.entries[0].dmaAddress, len);
      const c = await withDeadline(job.done, START_MS, 'checksum');
      expect(c.status).toBe(0);
      expect(c.result).toBe(crc32(data));
      // TO_DEVICE: the engine may read the buffer but not write it.
      const w = eduFill(edu, sgt.entries[0].dmaAddress, 64, 1);
      expect((await withDeadline(w.done, MS, 'fill of a read-only mapping')).status).toBe(-Errno.EFAULT);
      expect(kernel.iommu.faultLog.drain()[0]).toMatchObject({
        reason: IommuFaultReason.PERM,
        access: DmaAccess.WRITE,
      });
    } finally {
      await dmaBufUnmapAttachmentUnlocked(attach, sgt, DmaDataDirection.TO_DEVICE);
      await dmaBufDetach(buf, attach);
      dmaBufPut(buf);
    }
  });

  it('edu - a DMA to an unmapped IOVA gives an error completion, a fault record and an error fence; the worker keeps running', async () => {
    const { kernel, edu, iova, bytes } = eduHost({ pages: 2 });
    await edu.host.ready(START_MS);
    const hole = iova + 64 * PAGE_SIZE; // nothing mapped there
    const bad = eduCopy(edu, iova, hole, PAGE_SIZE);
    const c = await withDeadline(bad.done, MS, 'faulting copy');
    expect(c).toMatchObject({ status: -Errno.EFAULT, synthetic: false });
    expect(await dmaFenceWaitTimeout(bad.fence, MS)).toBeGreaterThan(0);
    expect(dmaFenceGetStatus(bad.fence)).toBe(-Errno.EFAULT);
    expect(await kernel.iommu.faultLog.waitForFault(MS)).toBe('fault');
    const [f] = kernel.iommu.faultLog.drain();
    expect(f).toMatchObject({
      deviceId: edu.dev.iommuId,
      address: hole,
      access: DmaAccess.WRITE,
      reason: IommuFaultReason.NOT_PRESENT,
    });
    // still alive: the next job runs.
    bytes.fill(9, 0, 16);
    const ok = eduChecksum(edu, iova, 16);
    expect((await withDeadline(ok.done, MS, 'checksum after fault')).result).toBe(
      crc32(bytes.subarray(0, 16)),
    );
    expect(edu.host.alive).toBe(true);
  });

  it('edu - an unknown opcode or an address beyond 2^52 is an error completion, not a crash', async () => {
    const { edu, iova } = eduHost({ pages: 2 });
    await edu.host.ready(START_MS);
    const unknown = eduSubmit(edu, { opcode: 0x55, src: iova, len: 64 });
    const far = eduSubmit(edu, { opcode: EduOp.COPY, src: 2 ** 52, dst: iova, len: 64 });
    const ok = eduFill(edu, iova, 64, 3);
    const done = await withDeadline(Promise.all([unknown.done, far.done, ok.done]), MS, 'completions');
    expect(done.map((c) => c.status)).toEqual([-Errno.EOPNOTSUPP, -Errno.EINVAL, 0]);
    expect(dmaFenceGetStatus(unknown.fence)).toBe(-Errno.EOPNOTSUPP);
    expect(dmaFenceGetStatus(far.fence)).toBe(-Errno.EINVAL);
    expect(dmaFenceGetStatus(ok.fence)).toBe(1);
    expect(() => eduCopy(edu, iova, iova, 0)).toThrow(/len 0/);
  });
});
