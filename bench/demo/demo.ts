/**
 * The main job: a single-host dma-buf walk-through. A movable exporter's buffer is shared with a
 * dynamic importer (an ODP-style RDMA NIC) and a static importer (a display engine); the buffer
 * moves, the dynamic importer is told (invalidate_mappings), re-maps behind the move's KERNEL
 * fence and finds its data; the static importer is pinned on map, so the next move is refused;
 * a device using a torn-down mapping is stopped by the IOMMU; explicit sync goes through a
 * sync_file. Everything goes through nodes/uapi; the kernel log is the trace points as dmesg.
 *
 * Self-checking: every claim printed is verified; a failed check makes the exit code 1.
 */
import type { Writable } from 'node:stream';
import { EmuError } from '../../common/errno.ts';
import { bootHost } from '../../nodes/host.ts';
import {
  close,
  DMA_BUF_SYNC,
  dmaBufExportSyncFile,
  dmaBufMmap,
  dmaBufSync,
  EPOLLIN,
  dmaBufPoll,
} from '../../nodes/uapi/dma-buf.ts';
import { dmesgFollow } from '../../nodes/uapi/dmesg.ts';
import { runE2eDemo } from './e2e-demo.ts';
import { syncFileWaitReady, syncIocFileInfo } from '../../nodes/uapi/sync.ts';
import {
  importerAttach,
  importerClose,
  importerMapping,
  importerRead,
  importerStaleWrite,
  importerUnmap,
  importerWrite,
  iommuFaults,
  iommuTranslate,
  mockExporterCreate,
  mockExporterInfo,
  mockExporterMove,
  type TestImporterEvent,
} from '../../nodes/uapi/test-devices.ts';

export interface DemoOptions {
  out: Writable;
  /** Buffer size in bytes (default 256 KiB). */
  size?: number;
}

function pattern(length: number, seed: number): Uint8Array {
  const a = new Uint8Array(length);
  for (let i = 0; i < length; i++) a[i] = (i * 131 + seed * 7) & 0xff;
  return a;
}

const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);
const hex = (n: number) => `0x${n.toString(16)}`;

export async function runDemo(opts: DemoOptions): Promise<number> {
  const out = opts.out;
  const size = opts.size ?? 256 * 1024;
  const say = (s = '') => out.write(`${s}\n`);
  let failures = 0;
  const check = (ok: boolean, what: string) => {
    say(`  ${ok ? 'ok  ' : 'FAIL'} ${what}`);
    if (!ok) failures++;
  };
  const releases: string[] = [];
  const t0 = performance.now();
  // The kernel log prints inline, so it interleaves with userspace in causal order.
  const stopDmesg = dmesgFollow((l) => {
    if (l.includes('dma-buf: release')) releases.push(l);
    say(`  ${l}`);
  }, t0);
  const events: TestImporterEvent[] = [];
  const onEvent = (e: TestImporterEvent) => events.push(e);
  const step = (title: string) => {
    say();
    say(`== ${title}`);
  };

  const host = bootHost({ name: 'host0', ramBytes: 64 << 20 });
  const app = host.spawn('demo');
  try {
    say(
      'p2pemu demo: dma-buf sharing on one emulated host (2026 semantics: invalidate_mappings, pin-on-map)',
    );
    say(
      `host0: ${host.kernel.ram.size >> 20} MiB RAM, IOMMU with one DMA domain per device, heaps: ${host.kernel.heaps.names().join(', ')}`,
    );

    step('1. export: a dynamic exporter (pin/unpin, may move) places the buffer in device VRAM');
    const fd = mockExporterCreate(app, size);
    say(
      `  userspace: MOCK_EXPORTER_CREATE(${size >> 10} KiB) -> dma-buf fd ${fd}, placement ${mockExporterInfo(app, fd).placement}`,
    );

    step('2. attach: nic0 as a dynamic importer (allow_peer2peer, ODP-style), disp0 as a static importer');
    const nic = await importerAttach(app, fd, { device: 'nic0', dynamic: true, p2p: true, onEvent });
    const disp = await importerAttach(app, fd, { device: 'disp0', dynamic: false, onEvent });

    step('3. nic0 maps under the resv lock and DMA-writes a pattern into VRAM through its IOMMU domain');
    const data = pattern(size, 1);
    check((await importerWrite(app, nic, 0, data)) === 0, `nic0 wrote ${size} bytes via DMA`);
    const first = importerMapping(app, nic)!;
    const iova = first.entries[0].dmaAddress;
    const before = iommuTranslate(app, 'nic0', iova);
    say(
      `  nic0 mapping: ${first.entries.length} DMA segment(s); IOVA ${hex(iova)} -> phys ${hex(before?.phys ?? 0)} (${before?.kind} ${before?.region})`,
    );

    step('4. memory pressure: the exporter evicts the buffer VRAM -> system RAM');
    say(
      '  exporter: dma_resv_lock; dma_buf_invalidate_mappings(); publish the copy as a KERNEL fence; unlock',
    );
    const moveFence = await mockExporterMove(app, fd, 'system');
    check(
      events.some((e) => e.importer === 'nic0' && e.what === 'invalidate'),
      'nic0 got invalidate_mappings (called with the resv lock held)',
    );
    check(
      !events.some((e) => e.importer === 'disp0' && e.what === 'invalidate'),
      'disp0 (static) was not called',
    );
    say(`  userspace: move returned sync_file fd ${moveFence} for the copy job's KERNEL fence`);

    step(
      '5. nic0 touches the buffer again: unmap the stale table, re-map, wait for the KERNEL fence, then DMA',
    );
    check(
      syncIocFileInfo(app, moveFence).status === 0,
      'the copy job has not run yet: its KERNEL fence is pending',
    );
    const mark = events.length;
    const back = await importerRead(app, nic, 0, size);
    for (const e of events.slice(mark).filter((x) => x.importer === 'nic0'))
      say(`  nic0: ${e.what}: ${e.detail}`);
    const second = importerMapping(app, nic)!;
    const after = iommuTranslate(app, 'nic0', second.entries[0].dmaAddress);
    say(
      `  nic0 mapping: IOVA ${hex(second.entries[0].dmaAddress)} -> phys ${hex(after?.phys ?? 0)} (${after?.kind} ${after?.region})`,
    );
    check(
      events.slice(mark).some((e) => e.what === 'wait-kernel-fence'),
      'nic0 waited for the KERNEL fence before its device touched the memory (rule 21)',
    );
    check(
      before?.kind === 'BAR' && after?.kind === 'RAM',
      're-map translates to system RAM now, not to VRAM',
    );
    check(
      back.status === 0 && equal(back.data, data),
      'nic0 reads back exactly what it wrote before the move',
    );
    check(
      syncIocFileInfo(app, moveFence).status === 1,
      'the move fence is signalled (status 1): copy done, old VRAM freed',
    );

    step('6. disp0 (static) maps: the core pins the buffer on map and waits for KERNEL fences itself');
    const shown = await importerRead(app, disp, 0, size);
    check(shown.status === 0 && equal(shown.data, data), 'disp0 scans out the same pixels');
    let refused = '';
    try {
      await mockExporterMove(app, fd, 'vram');
    } catch (e) {
      refused = e instanceof EmuError ? e.code : String(e);
    }
    check(
      refused === 'EBUSY',
      `a move while disp0 holds a pin-on-map mapping is refused: ${refused || 'not refused'} (rule 11)`,
    );
    await importerUnmap(app, disp);
    const moveBack = await mockExporterMove(app, fd, 'vram');
    check(
      (await syncFileWaitReady(app, moveBack, 5_000)) !== 0,
      'after disp0 unmaps (and unpins) the move back to VRAM goes through',
    );
    close(app, moveBack);

    step('7. a buggy device keeps using the mapping it gave back: the IOMMU stops it');
    await importerUnmap(app, nic);
    const status = importerStaleWrite(app, nic, second, new Uint8Array(64).fill(0xee));
    const faults = iommuFaults(app);
    check(
      status < 0 && faults.length > 0,
      `write through IOVA ${hex(second.entries[0].dmaAddress)} after unmap: DMA status ${status}, ${faults.length} fault record(s)`,
    );
    const verify = await importerRead(app, nic, 0, size);
    check(
      verify.status === 0 && equal(verify.data, data),
      'the buffer is intact: the faulting write never landed',
    );

    step('8. CPU access and explicit sync: mmap + DMA_BUF_IOCTL_SYNC, a sync_file snapshot, poll');
    await dmaBufSync(app, fd, DMA_BUF_SYNC.START | DMA_BUF_SYNC.READ);
    const cpu = new Uint8Array(16);
    dmaBufMmap(app, fd, 0, 1).read(0, cpu);
    await dmaBufSync(app, fd, DMA_BUF_SYNC.END | DMA_BUF_SYNC.READ);
    check(
      equal(cpu, data.subarray(0, 16)),
      'CPU reads the first 16 bytes through mmap, bracketed by SYNC START/END',
    );
    const snap = dmaBufExportSyncFile(app, fd, DMA_BUF_SYNC.WRITE);
    check(
      syncIocFileInfo(app, snap).status === 1,
      'EXPORT_SYNC_FILE: nothing pending, the snapshot is signalled',
    );
    check((await dmaBufPoll(app, fd, EPOLLIN, 1_000)) === EPOLLIN, 'poll(EPOLLIN) on the dma-buf is ready');
    close(app, snap);

    step('9. teardown: detach both importers, close the fd; the exporter releases exactly once');
    await importerClose(app, nic);
    await importerClose(app, disp);
    close(app, moveFence);
    close(app, fd);
    await new Promise((r) => setImmediate(r));
    check(releases.length === 1, 'release() ran once, after the last reference');
    stopDmesg();
    say();
    await runE2eDemo(say, check);
  } catch (e) {
    say(`demo failed: ${e instanceof Error ? e.message : String(e)}`);
    failures++;
  } finally {
    stopDmesg();
    await host.shutdown();
  }
  say();
  say(
    failures === 0
      ? `demo: all checks passed in ${((performance.now() - t0) / 1000).toFixed(2)} s (wall clock, this machine)`
      : `demo: ${failures} check(s) FAILED`,
  );
  return failures === 0 ? 0 : 1;
}
