import { describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { runInTask } from '../locking/task.ts';
import {
  dmaBufAttach,
  dmaBufAttachRevocable,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufExport,
  dmaBufInvalidateMappings,
  dmaBufIsPinned,
  dmaBufKernelWait,
  dmaBufMapAttachment,
  dmaBufMapAttachmentUnlocked,
  dmaBufMoveNotify,
  dmaBufPin,
  dmaBufPut,
  dmaBufUnmapAttachment,
  dmaBufUnmapAttachmentUnlocked,
  dmaBufUnpin,
  getDmaBuf,
} from './dma-buf.ts';
import { type DmaBufOps, dmaBufUnsupportedInvalidateMappings } from './dma-buf-ops.ts';
import { dmaFenceSignal } from './dma-fence.ts';
import {
  DmaResvUsage,
  dmaResvAddFence,
  dmaResvLock,
  dmaResvReserveFences,
  dmaResvUnlock,
} from './dma-resv.ts';
import { mockFence, probeDevice, probeExport } from './fixtures/probe-exporter.ts';
import { DmaDataDirection, PAGE_SIZE } from './scatterlist.ts';
import { expectCode } from '../../../test/support/expect-errno.ts';

const BIDI = DmaDataDirection.BIDIRECTIONAL;
const dev = probeDevice('gpu1');

async function locked<T>(
  buf: { resv: Parameters<typeof dmaResvLock>[0] },
  fn: () => Promise<T> | T,
): Promise<T> {
  await dmaResvLock(buf.resv, null);
  try {
    return await fn();
  } finally {
    dmaResvUnlock(buf.resv);
  }
}

const dynOps = (log: string[] = [], p2p = true) => ({
  allowPeer2peer: p2p,
  invalidateMappings: () => log.push('invalidate'),
});

describe('dma-buf export and lifetime', () => {
  const base: DmaBufOps = {
    mapDmaBuf: () => ({ entries: [], cpu: [], origNents: 0, length: 0 }),
    unmapDmaBuf: () => {},
    release: () => {},
  };
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['priv missing', { priv: undefined }, /exp_info\.priv/],
    ['ops missing', { ops: undefined }, /exp_info\.ops missing/],
    ['mapDmaBuf missing', { ops: { ...base, mapDmaBuf: undefined } }, /ops\.mapDmaBuf/],
    ['unmapDmaBuf missing', { ops: { ...base, unmapDmaBuf: undefined } }, /ops\.unmapDmaBuf/],
    ['release missing', { ops: { ...base, release: undefined } }, /ops\.release/],
    ['pin without unpin', { ops: { ...base, pin: () => {} } }, /pin and ops\.unpin/],
    ['unpin without pin', { ops: { ...base, unpin: () => {} } }, /pin and ops\.unpin/],
    ['size not page multiple', { size: 100 }, /size 100/],
    ['size zero', { size: 0 }, /size 0/],
  ];
  for (const [what, patch, msg] of cases) {
    it(`dma-buf - rule 1: export fails EINVAL when ${what}`, async () => {
      const e = await expectCode(
        () => dmaBufExport({ expName: 't', ops: base, size: PAGE_SIZE, priv: {}, ...patch } as never),
        'EINVAL',
      );
      expect(e.message).toMatch(msg);
    });
  }

  it('dma-buf - rule 3 / scenario 1: release runs exactly once, after the last put', async () => {
    const p = probeExport();
    getDmaBuf(p.dmabuf);
    const a = await dmaBufAttach(p.dmabuf, dev);
    const sgt = await dmaBufMapAttachmentUnlocked(a, BIDI);
    await dmaBufUnmapAttachmentUnlocked(a, sgt, BIDI);
    await dmaBufDetach(p.dmabuf, a);
    dmaBufPut(p.dmabuf);
    expect(p.released).toBe(0);
    dmaBufPut(p.dmabuf);
    expect(p.released).toBe(1);
    await expectCode(() => dmaBufPut(p.dmabuf), 'EBADF');
    expect(p.released).toBe(1);
  });

  it('dma-buf - rule 3: last put with an attachment left is refused EBUSY and does not release', async () => {
    const p = probeExport();
    const a = await dmaBufAttach(p.dmabuf, dev);
    const e = await expectCode(() => dmaBufPut(p.dmabuf), 'EBUSY');
    expect(e.message).toMatch(/1 attachment/);
    expect(p.released).toBe(0);
    await dmaBufDetach(p.dmabuf, a);
    dmaBufPut(p.dmabuf);
    expect(p.released).toBe(1);
  });

  it('dma-buf - a released buffer refuses every entry point with EBADF naming it', async () => {
    const p = probeExport();
    dmaBufPut(p.dmabuf);
    const e = await expectCode(dmaBufAttach(p.dmabuf, dev), 'EBADF');
    expect(e.message).toMatch(/dmabuf probe:\d+ was released/);
    await expectCode(() => getDmaBuf(p.dmabuf), 'EBADF');
  });
});

describe('dma-buf attach and detach', () => {
  for (const code of ['EBUSY', 'EOPNOTSUPP', 'ENODEV'] as const) {
    it(`dma-buf - rule 5 / scenario 2: exporter attach failing ${code} leaves no attachment`, async () => {
      const p = probeExport({ refuseAttach: code });
      await expectCode(dmaBufAttach(p.dmabuf, dev), code);
      await expectCode(dmaBufDynamicAttach(p.dmabuf, dev, dynOps()), code);
      expect(p.dmabuf.attachments).toHaveLength(0);
    });
  }

  it('dma-buf - rule 5: exporter attach runs without the resv lock; the list changes under it', async () => {
    const p = probeExport();
    await dmaBufAttach(p.dmabuf, dev);
    expect(p.calls.find((c) => c.op === 'attach')?.locked).toBe(false);
    expect(p.dmabuf.attachments).toHaveLength(1);
  });

  it('dma-buf - rule 6 / scenario 3: dynamic attach without invalidateMappings is EINVAL', async () => {
    const p = probeExport({ dynamic: true });
    const e = await expectCode(dmaBufDynamicAttach(p.dmabuf, dev, { allowPeer2peer: true }), 'EINVAL');
    expect(e.message).toMatch(/invalidateMappings/);
    expect(p.dmabuf.attachments).toHaveLength(0);
  });

  it('dma-buf - rule 6: the pre-2026 moveNotify name is accepted as the invalidate op', async () => {
    const p = probeExport({ dynamic: true });
    const log: string[] = [];
    await dmaBufDynamicAttach(p.dmabuf, dev, { allowPeer2peer: false, moveNotify: () => log.push('move') });
    await locked(p.dmabuf, () => dmaBufMoveNotify(p.dmabuf));
    expect(log).toEqual(['move']);
  });

  it('dma-buf - rule 7: peer2peer starts from the importer and the exporter may clear it', async () => {
    const p = probeExport();
    expect((await dmaBufAttach(p.dmabuf, dev)).peer2peer).toBe(false);
    expect((await dmaBufDynamicAttach(p.dmabuf, dev, dynOps([], true))).peer2peer).toBe(true);
    const q = probeExport({ clearP2p: true });
    expect((await dmaBufDynamicAttach(q.dmabuf, dev, dynOps([], true))).peer2peer).toBe(false);
  });

  it('dma-buf - rule 7: an exporter that sets peer2peer is refused EINVAL and no attachment stays', async () => {
    const p = probeExport({ setP2p: true });
    await expectCode(dmaBufDynamicAttach(p.dmabuf, dev, dynOps([], false)), 'EINVAL');
    expect(p.dmabuf.attachments).toHaveLength(0);
    expect(p.calls.map((c) => c.op)).toEqual(['attach', 'detach']);
  });

  it('dma-buf - rule 8: detach with a live mapping is EBUSY; after unmap it unlists, then calls detach unlocked', async () => {
    const p = probeExport();
    const a = await dmaBufAttach(p.dmabuf, dev);
    const sgt = await dmaBufMapAttachmentUnlocked(a, BIDI);
    await expectCode(dmaBufDetach(p.dmabuf, a), 'EBUSY');
    await dmaBufUnmapAttachmentUnlocked(a, sgt, BIDI);
    await dmaBufDetach(p.dmabuf, a);
    expect(p.dmabuf.attachments).toHaveLength(0);
    expect(p.calls.at(-1)).toEqual({ op: 'detach', locked: false, dev: 'gpu1' });
    await expectCode(dmaBufMapAttachmentUnlocked(a, BIDI), 'EINVAL');
  });
});

describe('dma-buf pin', () => {
  it('dma-buf - rule 9: a static importer may not pin (EINVAL)', async () => {
    const p = probeExport({ dynamic: true });
    const a = await dmaBufAttach(p.dmabuf, dev);
    await locked(p.dmabuf, () => expectCode(dmaBufPin(a), 'EINVAL'));
  });

  it('dma-buf - rule 9: pin and unpin need the resv lock (EPERM without it)', async () => {
    const p = probeExport({ dynamic: true });
    const a = await dmaBufDynamicAttach(p.dmabuf, dev, dynOps());
    await expectCode(dmaBufPin(a), 'EPERM');
    await locked(p.dmabuf, () => dmaBufPin(a));
    expect(p.calls.find((c) => c.op === 'pin')?.locked).toBe(true);
    expect(dmaBufIsPinned(p.dmabuf)).toBe(true);
    await expectCode(dmaBufUnpin(a), 'EPERM');
    await locked(p.dmabuf, () => dmaBufUnpin(a));
    expect(dmaBufIsPinned(p.dmabuf)).toBe(false);
    await locked(p.dmabuf, () => expectCode(dmaBufUnpin(a), 'EINVAL'));
  });

  it('dma-buf - rule 8: detach while pinned is EBUSY', async () => {
    const p = probeExport({ dynamic: true });
    const a = await dmaBufDynamicAttach(p.dmabuf, dev, dynOps());
    await locked(p.dmabuf, () => dmaBufPin(a));
    await expectCode(dmaBufDetach(p.dmabuf, a), 'EBUSY');
    await locked(p.dmabuf, () => dmaBufUnpin(a));
    await dmaBufDetach(p.dmabuf, a);
  });
});

describe('dma-buf map and unmap', () => {
  it('dma-buf - rule 13 / scenario 4: locked map without the resv lock fails EPERM naming the call', async () => {
    const p = probeExport();
    const a = await dmaBufAttach(p.dmabuf, dev);
    const e = await expectCode(dmaBufMapAttachment(a, BIDI), 'EPERM');
    expect(e.message).toMatch(/^EPERM: dmaBufMapAttachment: .*lock must be held/);
  });

  it('dma-buf - scenario 4: the _unlocked map while holding the lock is EDEADLK, not a hang', async () => {
    const p = probeExport();
    const a = await dmaBufAttach(p.dmabuf, dev);
    await runInTask('importer', async () => {
      await dmaResvLock(p.dmabuf.resv, null);
      const e = await expectCode(withDeadline(dmaBufMapAttachmentUnlocked(a, BIDI), 2_000, 'map'), 'EDEADLK');
      expect(e.message).toMatch(/dmaBufMapAttachmentUnlocked/);
      dmaResvUnlock(p.dmabuf.resv);
    });
  });

  it('dma-buf - rule 14 / scenario 12: every map returns a fresh table; an exporter reusing one is refused', async () => {
    const p = probeExport();
    const a = await dmaBufAttach(p.dmabuf, dev);
    const t1 = await dmaBufMapAttachmentUnlocked(a, BIDI);
    const t2 = await dmaBufMapAttachmentUnlocked(a, BIDI);
    expect(t1).not.toBe(t2);
    expect(a.mappings.size).toBe(2);
    const bad = probeExport({ reuseTable: true });
    const b = await dmaBufAttach(bad.dmabuf, dev);
    await dmaBufMapAttachmentUnlocked(b, BIDI);
    await expectCode(dmaBufMapAttachmentUnlocked(b, BIDI), 'EINVAL');
  });

  it('dma-buf - rule 15 / scenario 12: an unaligned table from the exporter is EINVAL', async () => {
    const p = probeExport({ unaligned: true });
    const a = await dmaBufAttach(p.dmabuf, dev);
    const e = await expectCode(dmaBufMapAttachmentUnlocked(a, BIDI), 'EINVAL');
    expect(e.message).toMatch(/not PAGE_SIZE aligned/);
  });

  it('dma-buf - rule 16 / scenario 12: the importer sees only the DMA side of the table', async () => {
    const p = probeExport();
    const a = await dmaBufAttach(p.dmabuf, dev);
    const sgt = await dmaBufMapAttachmentUnlocked(a, BIDI);
    expect(sgt.origNents).toBe(0);
    expect(sgt.cpu).toHaveLength(0);
    expect(sgt.entries.every((e) => e.dmaAddress % PAGE_SIZE === 0)).toBe(true);
    expect(sgt.length).toBe(p.dmabuf.size);
  });

  it('dma-buf - rule 17: exporter errors come back as errno-coded errors (ENODEV from a revoked exporter)', async () => {
    const p = probeExport({ failMap: 'ENODEV' });
    const a = await dmaBufAttach(p.dmabuf, dev);
    await expectCode(dmaBufMapAttachmentUnlocked(a, BIDI), 'ENODEV');
    expect(a.mappings.size).toBe(0);
  });

  it('dma-buf - unmap with a foreign table, a wrong direction or an invalid direction is EINVAL', async () => {
    const p = probeExport();
    const a = await dmaBufAttach(p.dmabuf, dev);
    const sgt = await dmaBufMapAttachmentUnlocked(a, DmaDataDirection.TO_DEVICE);
    await expectCode(
      dmaBufUnmapAttachmentUnlocked(
        a,
        { entries: [], cpu: [], origNents: 0, length: 0 },
        DmaDataDirection.TO_DEVICE,
      ),
      'EINVAL',
    );
    await expectCode(dmaBufUnmapAttachmentUnlocked(a, sgt, DmaDataDirection.FROM_DEVICE), 'EINVAL');
    await expectCode(dmaBufMapAttachmentUnlocked(a, 3 as DmaDataDirection), 'EINVAL');
    await dmaBufUnmapAttachmentUnlocked(a, sgt, DmaDataDirection.TO_DEVICE);
  });

  it('dma-buf - rule 18 / scenario 5: a static importer of a dynamic exporter is pinned on map and unpinned on unmap', async () => {
    const p = probeExport({ dynamic: true });
    const a = await dmaBufAttach(p.dmabuf, dev);
    const sgt = await dmaBufMapAttachmentUnlocked(a, BIDI);
    expect(p.pins).toBe(1);
    expect(dmaBufIsPinned(p.dmabuf)).toBe(true);
    expect(p.calls.map((c) => `${c.op}:${c.locked}`)).toEqual(['attach:false', 'pin:true', 'map:true']);
    await dmaBufUnmapAttachmentUnlocked(a, sgt, BIDI);
    expect(p.pins).toBe(0);
    expect(p.calls.slice(-2).map((c) => c.op)).toEqual(['unmap', 'unpin']);
  });

  it('dma-buf - rule 18: a failed map after pin-on-map unpins again', async () => {
    const p = probeExport({ dynamic: true, failMap: 'ENOMEM' });
    const a = await dmaBufAttach(p.dmabuf, dev);
    await expectCode(dmaBufMapAttachmentUnlocked(a, BIDI), 'ENOMEM');
    expect(p.pins).toBe(0);
  });

  it('dma-buf - rule 18 / scenario 6: static map does not return before the KERNEL fence signals', async () => {
    const p = probeExport({ dynamic: true });
    const a = await dmaBufAttach(p.dmabuf, dev);
    const clear = mockFence();
    const write = mockFence();
    await locked(p.dmabuf, () => {
      dmaResvReserveFences(p.dmabuf.resv, 2);
      dmaResvAddFence(p.dmabuf.resv, clear, DmaResvUsage.KERNEL);
      dmaResvAddFence(p.dmabuf.resv, write, DmaResvUsage.WRITE);
    });
    let done = false;
    const mapping = dmaBufMapAttachmentUnlocked(a, BIDI).then((t) => {
      done = true;
      return t;
    });
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(done).toBe(false);
    dmaFenceSignal(clear); // the WRITE fence stays pending: static map only waits for KERNEL
    const sgt = await withDeadline(mapping, 2_000, 'static map');
    expect(done).toBe(true);
    await dmaBufUnmapAttachmentUnlocked(a, sgt, BIDI);
  });

  it('dma-buf - rule 18: a KERNEL fence that never signals fails the static map with ETIMEDOUT and unpins', async () => {
    const p = probeExport({ dynamic: true });
    const a = await dmaBufAttach(p.dmabuf, dev);
    await locked(p.dmabuf, () => {
      dmaResvReserveFences(p.dmabuf.resv, 1);
      dmaResvAddFence(p.dmabuf.resv, mockFence(), DmaResvUsage.KERNEL);
    });
    const saved = dmaBufKernelWait.timeoutMs;
    dmaBufKernelWait.timeoutMs = 20;
    try {
      await expectCode(dmaBufMapAttachmentUnlocked(a, BIDI), 'ETIMEDOUT');
    } finally {
      dmaBufKernelWait.timeoutMs = saved;
    }
    expect(p.pins).toBe(0);
    expect(a.mappings.size).toBe(0);
  });

  it('dma-buf - rule 20-21: a dynamic importer is never implicitly pinned and the core does not wait for it', async () => {
    const p = probeExport({ dynamic: true });
    const a = await dmaBufDynamicAttach(p.dmabuf, dev, dynOps());
    await locked(p.dmabuf, async () => {
      dmaResvReserveFences(p.dmabuf.resv, 1);
      dmaResvAddFence(p.dmabuf.resv, mockFence(), DmaResvUsage.KERNEL);
      const sgt = await withDeadline(dmaBufMapAttachment(a, BIDI), 1_000, 'dynamic map');
      expect(p.pins).toBe(0);
      await dmaBufUnmapAttachment(a, sgt, BIDI);
    });
  });
});

describe('dma-buf invalidate_mappings', () => {
  it('dma-buf - rule 22 / scenario 8: every dynamic attachment is called, mapped or not; static ones are not', async () => {
    const p = probeExport({ dynamic: true });
    const log: string[] = [];
    const a1 = await dmaBufDynamicAttach(p.dmabuf, probeDevice('nic0'), {
      allowPeer2peer: true,
      invalidateMappings: (a) => log.push(`inv ${a.dev.name}`),
    });
    await dmaBufDynamicAttach(p.dmabuf, probeDevice('nic1'), {
      allowPeer2peer: true,
      invalidateMappings: (a) => log.push(`inv ${a.dev.name}`),
    });
    await dmaBufAttach(p.dmabuf, probeDevice('static0'));
    await locked(p.dmabuf, async () => {
      await dmaBufMapAttachment(a1, BIDI);
      dmaBufInvalidateMappings(p.dmabuf);
    });
    expect(log).toEqual(['inv nic0', 'inv nic1']);
  });

  it('dma-buf - rule 22: invalidate without the resv lock is EPERM; the callback runs with it held', async () => {
    const p = probeExport({ dynamic: true });
    let heldInCallback = false;
    await dmaBufDynamicAttach(p.dmabuf, dev, {
      allowPeer2peer: true,
      invalidateMappings: () => (heldInCallback = p.dmabuf.resv.lock.isLocked),
    });
    await expectCode(() => dmaBufInvalidateMappings(p.dmabuf), 'EPERM');
    await locked(p.dmabuf, () => dmaBufInvalidateMappings(p.dmabuf));
    expect(heldInCallback).toBe(true);
  });

  it('dma-buf - rule 23-24: a new map after the invalidate points to the new location; the old table is still valid to unmap', async () => {
    const p = probeExport({ dynamic: true });
    let stale = false;
    const a = await dmaBufDynamicAttach(p.dmabuf, dev, {
      allowPeer2peer: true,
      invalidateMappings: () => (stale = true),
    });
    const old = await locked(p.dmabuf, () => dmaBufMapAttachment(a, BIDI));
    await locked(p.dmabuf, () => {
      p.generation++; // the exporter moved the backing store
      dmaBufInvalidateMappings(p.dmabuf);
    });
    expect(stale).toBe(true);
    const fresh = await locked(p.dmabuf, () => dmaBufMapAttachment(a, BIDI));
    expect(fresh.entries[0].dmaAddress).not.toBe(old.entries[0].dmaAddress);
    await locked(p.dmabuf, async () => {
      await dmaBufUnmapAttachment(a, old, BIDI);
      await dmaBufUnmapAttachment(a, fresh, BIDI);
    });
  });

  it('dma-buf - rule 28: attach_revocable is true for a real invalidate op, false for the unsupported sentinel and static importers', async () => {
    const p = probeExport({ dynamic: true });
    expect(dmaBufAttachRevocable(await dmaBufDynamicAttach(p.dmabuf, dev, dynOps()))).toBe(true);
    expect(
      dmaBufAttachRevocable(
        await dmaBufDynamicAttach(p.dmabuf, dev, {
          allowPeer2peer: true,
          invalidateMappings: dmaBufUnsupportedInvalidateMappings,
        }),
      ),
    ).toBe(false);
    expect(dmaBufAttachRevocable(await dmaBufAttach(p.dmabuf, dev))).toBe(false);
  });
});
