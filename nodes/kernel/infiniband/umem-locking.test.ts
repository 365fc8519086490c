// Who holds the resv lock around ib_umem_dmabuf and the mlx5 dma-buf MR registrations
// (kernel-semantics §7.2 rules 3 and 6, §7.3 rule 8): unmap_pages refuses a caller that does not
// hold the lock; get_pinned_revocable_and_lock returns with the lock held by its caller, so a
// revoke racing the registration waits and runs the driver's callback that set_revoke_locked
// installed; the ODP prefault maps and programs the MTTs in one hold of the lock, so a task
// waiting for the lock never finds the MR mapped but untranslated.
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { onTrace } from '../../../common/trace.ts';
import { expectCode } from '../../../test/support/expect-errno.ts';
import { hcaMkeyBase, Mlx5Mkey, Mlx5MkeyState, Mlx5Xlt } from '../../fabric/mlx5-layout.ts';
import type { DmaBuf } from '../dma-buf/dma-buf.ts';
import { dmaResvLock, dmaResvUnlock } from '../dma-buf/dma-resv.ts';
import { PAGE_SIZE } from '../dma-buf/scatterlist.ts';
import { runInTask } from '../locking/task.ts';
import {
  IbvWcStatus as S,
  ibvPostSend,
  ibvRegDmabufMr,
  ibvRegMr,
  Mlx5dvRegDmabufAccess as A,
  mlx5dvRegDmabufMr,
  mmapAnonymous,
} from '../../uapi/verbs.ts';
import {
  ibUmemDmabufGet,
  ibUmemDmabufGetPinnedRevocableAndLock,
  ibUmemDmabufMapPages,
  ibUmemDmabufRelease,
  ibUmemDmabufRevoke,
  ibUmemDmabufSetRevokeLocked,
  ibUmemDmabufUnmapPages,
} from './umem-dmabuf.ts';
import {
  ALL_ACCESS,
  MS,
  mkeyWord,
  mockBuf,
  pollN,
  rcPair,
  rdmaHost,
  rdmaTeardown,
  rdmaWr,
  traceCounter,
} from './fixtures/rdma-host.ts';

afterEach(rdmaTeardown);

const IOVA = 0x900_0000;

/**
 * At the first map of `buf` (right after the exporter's map op, in the mapping task): record the
 * lock state the mapper has, then run `race` (which starts a competing task). off() unsubscribes.
 */
function atFirstMap(buf: DmaBuf, race: () => void) {
  const at: { seen: { locked: boolean; byMapper: boolean } | null; off: () => void } = {
    seen: null,
    off: () => {},
  };
  at.off = onTrace('dmabufMap', (m) => {
    if (at.seen !== null || (m as { buf: string }).buf !== String(buf)) return;
    at.seen = { locked: buf.resv.lock.isLocked, byMapper: buf.resv.lock.ownerIsCurrentTask() };
    race();
  });
  return at;
}

describe('ib_umem_dmabuf and mlx5 registration locking', () => {
  it('umem - unmap without the resv lock, or with another task holding it, is EPERM and leaves the mapping in place', async () => {
    const h = await rdmaHost();
    const B = mockBuf(h, 64 << 10);
    const buf = B.exp.dmabuf;
    const umem = await withDeadline(
      ibUmemDmabufGet(h.nics[0].dev, 0, 2 * PAGE_SIZE, buf, true, { invalidate: () => {} }),
      MS,
      'get',
    );
    await withDeadline(dmaResvLock(buf.resv, null), MS, 'lock');
    try {
      await withDeadline(ibUmemDmabufMapPages(umem), MS, 'map');
    } finally {
      dmaResvUnlock(buf.resv);
    }
    const unmaps = traceCounter('dmabufUnmap', (m) => m.buf === String(buf));
    const stillMapped = (what: string) => {
      expect({ sgt: umem.sgt !== null, runs: umem.runs !== null, mapped: B.exp.mappedCount }, what).toEqual({
        sgt: true,
        runs: true,
        mapped: 1,
      });
      expect(unmaps.n, what).toBe(0);
    };
    try {
      // nobody holds it.
      const e1 = await expectCode(
        () => withDeadline(ibUmemDmabufUnmapPages(umem), MS, 'unmap unlocked'),
        'EPERM',
      );
      expect(e1.message).toMatch(/^EPERM: ibUmemDmabufUnmapPages: .*lock must be held/);
      stillMapped('unlocked');
      // another task holds it (an exporter in the middle of a move, say): not the caller's.
      await runInTask('holder', async () => {
        await withDeadline(dmaResvLock(buf.resv, null), MS, 'holder lock');
        try {
          const e2 = await expectCode(
            () => runInTask('other', () => withDeadline(ibUmemDmabufUnmapPages(umem), MS, 'unmap by other')),
            'EPERM',
          );
          expect(e2.message).toMatch(/^EPERM: ibUmemDmabufUnmapPages: .*lock must be held/);
          stillMapped('held by another task');
          // the holder may.
          await withDeadline(ibUmemDmabufUnmapPages(umem), MS, 'unmap by the holder');
        } finally {
          dmaResvUnlock(buf.resv);
        }
      });
      expect({ sgt: umem.sgt !== null, mapped: B.exp.mappedCount, unmaps: unmaps.n }).toEqual({
        sgt: false,
        mapped: 0,
        unmaps: 1,
      });
    } finally {
      unmaps.off();
    }
    await withDeadline(ibUmemDmabufRelease(umem), MS, 'release');
    expect(buf.attachments.length).toBe(0);
  });

  it('umem - get_pinned_revocable_and_lock returns holding the resv lock; a revoke started during its map waits and runs the callback set_revoke_locked installed', async () => {
    const h = await rdmaHost();
    const B = mockBuf(h, 64 << 10);
    const buf = B.exp.dmabuf;
    const race: { revoke?: Promise<void> } = {};
    const map = atFirstMap(buf, () => {
      race.revoke = runInTask('exporter', () => B.exp.revoke({ waitUnmap: true, timeoutMs: MS }));
    });
    const driver = { calls: 0, revokedBefore: null as boolean | null };
    try {
      const umem = await runInTask('driver', async () => {
        const u = await withDeadline(
          ibUmemDmabufGetPinnedRevocableAndLock(h.nics[0].dev, 0, 64 << 10, buf, true),
          MS,
          'get',
        );
        try {
          // held by this very call, not merely by someone; the revoke still waits for it.
          expect(buf.resv.lock.ownerIsCurrentTask()).toBe(true);
          expect({
            racing: race.revoke !== undefined,
            revoked: u.revoked,
            pinned: u.pinned,
            exporterRevoked: B.exp.revoked,
            mapped: B.exp.mappedCount,
          }).toEqual({ racing: true, revoked: false, pinned: true, exporterRevoked: false, mapped: 1 });
          ibUmemDmabufSetRevokeLocked(u, {
            invalidate: (x) => {
              driver.calls++;
              driver.revokedBefore = x.revoked;
              void ibUmemDmabufRevoke(x);
            },
          });
        } finally {
          dmaResvUnlock(buf.resv);
        }
        return u;
      });
      expect(map.seen).toEqual({ locked: true, byMapper: true });
      await withDeadline(race.revoke!, MS, 'revoke');
      expect(driver).toEqual({ calls: 1, revokedBefore: false });
      const [attach] = buf.attachments;
      expect({
        revoked: umem.revoked,
        pinned: umem.pinned,
        pins: attach.pinCount,
        mapped: B.exp.mappedCount,
      }).toEqual({ revoked: true, pinned: false, pins: 0, mapped: 0 });
      await withDeadline(ibUmemDmabufRelease(umem), MS, 'release');
      expect(buf.attachments.length).toBe(0);
    } finally {
      map.off();
    }
  });

  it("mlx5 - a revoke racing a pinned-revocable registration waits for it: mlx5's callback revokes the new mkey, nothing stays mapped or pinned, no WRITE lands", async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const B = mockBuf(h, 64 << 10);
    const buf = B.exp.dmabuf;
    const race: { revoke?: Promise<void> } = {};
    const map = atFirstMap(buf, () => {
      race.revoke = runInTask('exporter', () => B.exp.revoke({ waitUnmap: true, timeoutMs: MS }));
    });
    const revokes = traceCounter('rdmaInvalidate', (m) => m.mode === 'pinned-revocable');
    try {
      const mr = await withDeadline(
        mlx5dvRegDmabufMr(b.pd, 0, 64 << 10, IOVA, B.fd, ALL_ACCESS, A.P2PEMU_PINNED_REVOCABLE),
        MS,
        'reg',
      );
      expect(map.seen).toEqual({ locked: true, byMapper: true });
      await withDeadline(race.revoke!, MS, 'revoke');
      const [attach] = buf.attachments;
      expect({
        driverRevokes: revokes.n,
        state: mkeyWord(h, mr.rkey, Mlx5Mkey.STATE),
        pins: attach.pinCount,
        mapped: B.exp.mappedCount,
      }).toEqual({ driverRevokes: 1, state: Mlx5MkeyState.REVOKED, pins: 0, mapped: 0 });
      await withDeadline(B.exp.unrevoke(), MS, 'unrevoke');
      const src = mmapAnonymous(h.proc, 4096);
      src.bytes.fill(0x6b);
      const smr = ibvRegMr(a.pd, src.addr, 4096, ALL_ACCESS);
      ibvPostSend(a.qp, rdmaWr('write', 1, smr.lkey, src.addr, mr.rkey, IOVA, 4096));
      expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_REM_ACCESS_ERR);
      expect(B.read(0, 4096).every((x) => x === 0)).toBe(true);
      expect(h.kernel.iommu.faultLog.drain()).toEqual([]);
    } finally {
      map.off();
      revokes.off();
    }
  });

  it('mlx5 - the ODP prefault holds the resv lock from the map to the MTT write: the exporter maps under the registering call, and a task waiting for the lock finds the MTTs present', async () => {
    const h = await rdmaHost();
    const [, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const B = mockBuf(h, 64 << 10);
    const buf = B.exp.dmabuf;
    const nic = h.nics[0];
    const race: { seen?: Promise<{ mapped: number; xlt: number }> } = {};
    const map = atFirstMap(buf, () => {
      race.seen = runInTask('observer', async () => {
        await dmaResvLock(buf.resv, null);
        try {
          const mr = [...nic.mrs.values()].find((m) => m.umem !== null && 'dmabuf' in m.umem);
          const xlt = mr ? Atomics.load(nic.hca, hcaMkeyBase(mr.index) + Mlx5Mkey.XLT) : -1;
          return { mapped: B.exp.mappedCount, xlt };
        } finally {
          dmaResvUnlock(buf.resv);
        }
      });
    });
    try {
      const mr = await withDeadline(ibvRegDmabufMr(b.pd, 0, 64 << 10, IOVA, B.fd, ALL_ACCESS), MS, 'reg');
      expect(map.seen).toEqual({ locked: true, byMapper: true });
      expect(await withDeadline(race.seen!, MS, 'observer')).toEqual({ mapped: 1, xlt: Mlx5Xlt.PRESENT });
      expect(mkeyWord(h, mr.rkey, Mlx5Mkey.XLT)).toBe(Mlx5Xlt.PRESENT);
    } finally {
      map.off();
    }
  });
});
