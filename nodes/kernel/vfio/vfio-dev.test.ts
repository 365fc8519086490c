// The vfio-dev model in its worker behind a HostKernel: CHECKSUM and FILL of a BAR range through
// the device queue (the way an E2E test checks what a NIC wrote into the BAR), and removal
// leaving no worker. The model's own argument checks on the test thread: devices/vfio-dev/.
import { crc32 } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { liveWorkers } from '../../../common/worker.ts';
import { expectCode, expectErr } from '../../../test/support/expect-errno.ts';
import {
  O_RDWR,
  PCI_COMMAND_MASTER,
  vfioDeviceChecksum,
  vfioDeviceFeatureDmaBuf,
  vfioDeviceFill,
  vfioDeviceOpen,
  vfioDeviceSetCommand,
} from '../../uapi/vfio.ts';
import {
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufMapAttachmentUnlocked,
  dmaBufUnmapAttachmentUnlocked,
} from '../dma-buf/dma-buf.ts';
import { DmaDataDirection, PAGE_SIZE } from '../dma-buf/scatterlist.ts';
import {
  MS,
  pattern,
  START_MS,
  sgtRead,
  sgtWrite,
  vfioHost,
  vfioHostsTeardown,
} from './fixtures/vfio-host.ts';
import { vfioDevChecksum, vfioDevFill } from './vfio-dev.ts';
import { vfioPciDmaBufOf } from './vfio-pci-dmabuf.ts';
import { vfioPciRemove, vfioPciTphStats } from './vfio-pci.ts';
import { PciTphCompleter } from './vfio-uapi.ts';

afterEach(vfioHostsTeardown);

const BIDI = DmaDataDirection.BIDIRECTIONAL;
const vfioWorkers = () => liveWorkers().filter((w) => w.entry.includes('vfio-dev'));

describe('vfio-dev device', () => {
  it('vfio - the device checksums a BAR range a peer wrote over P2P and fills one the peer reads back', async () => {
    const h = vfioHost();
    await h.vdev.host.ready(START_MS);
    const fd = await vfioDeviceFeatureDmaBuf(h.proc, h.devFd, {
      region_index: 0,
      open_flags: O_RDWR,
      flags: 0,
      nr_ranges: 1,
      dma_ranges: [{ offset: 4 * PAGE_SIZE, length: 4 * PAGE_SIZE }],
    });
    const buf = h.buf(fd);
    const nic = await dmaBufDynamicAttach(buf, h.nic, { allowPeer2peer: true, invalidateMappings: () => {} });
    const sgt = await dmaBufMapAttachmentUnlocked(nic, BIDI);
    try {
      const ctx = h.peer(h.nic);
      const data = pattern(2 * PAGE_SIZE + 100, 9);
      expect(sgtWrite(ctx, sgt, PAGE_SIZE, data)).toBe(0); // bus addresses: through the switch
      const sum = vfioDeviceChecksum(h.proc, h.devFd, 0, 5 * PAGE_SIZE, data.length);
      expect(await withDeadline(sum, MS, 'checksum')).toBe(crc32(data));
      await withDeadline(vfioDeviceFill(h.proc, h.devFd, 0, 4 * PAGE_SIZE, 256, 0x5a), MS, 'fill');
      const back = new Uint8Array(256);
      expect(sgtRead(ctx, sgt, 0, back)).toBe(0);
      expect(back.every((b) => b === 0x5a)).toBe(true);
    } finally {
      await dmaBufUnmapAttachmentUnlocked(nic, sgt, BIDI);
      await dmaBufDetach(buf, nic);
    }
  });

  it('vfio - device commands reach the BAR with decode off, and bad ranges are refused before the queue', async () => {
    const h = vfioHost();
    await h.vdev.host.ready(START_MS);
    await vfioDeviceSetCommand(h.proc, h.devFd, PCI_COMMAND_MASTER); // peers lose the BAR, the device does not
    await withDeadline(vfioDeviceFill(h.proc, h.devFd, 0, 0, 64, 7), MS, 'fill');
    expect(h.vdev.bars[0]!.region.bytes.subarray(0, 65)).toEqual(Uint8Array.from([...Array(64).fill(7), 0]));
    expect(await withDeadline(vfioDeviceChecksum(h.proc, h.devFd, 0, 0, 64), MS, 'checksum')).toBe(
      crc32(new Uint8Array(64).fill(7)),
    );
    expect(() => vfioDevChecksum(h.vdev, 1, 0, 64)).toThrow(/bar 1: vfio0 has no such BAR/);
    expect(() => vfioDevChecksum(h.vdev, 0, 64 << 10, 1)).toThrow(/must lie inside BAR0/);
    expect(() => vfioDevFill(h.vdev, 0, 0, 0, 1)).toThrow(/len 0/);
    expect(() => vfioDevFill(h.vdev, 0, 0, 1, 300)).toThrow(/value 300/);
    expect(h.vdev.host.inFlight).toBe(0);
  });

  it('vfio - remove stops the worker and leaves none; its buffers stay revoked and the device cannot be opened', async () => {
    const h = vfioHost();
    const fd = await vfioDeviceFeatureDmaBuf(h.proc, h.devFd, {
      region_index: 0,
      open_flags: O_RDWR,
      flags: 0,
      nr_ranges: 1,
      dma_ranges: [{ offset: 0, length: PAGE_SIZE }],
    });
    expect(vfioWorkers()).toHaveLength(1);
    await withDeadline(vfioPciRemove(h.vdev), START_MS, 'remove');
    expect(vfioWorkers()).toHaveLength(0);
    expect(h.kernel.physMap.regionToPhys(h.vdev.bars[0]!.region, 0)).toBeNull(); // off the bus
    expect(vfioPciDmaBufOf(h.buf(fd))).toMatchObject({ revoked: true, permanent: true, vdev: null });
    await expectCode(() => vfioDeviceOpen(h.proc, 'vfio0'), 'ENODEV');
  });

  it('vfio - TPH statistics of a BAR: a BAR that does not exist is EINVAL, a function that is no TPH completer is EOPNOTSUPP', () => {
    const plain = vfioHost({ tphCompleter: PciTphCompleter.NONE });
    expectErr(() => vfioPciTphStats(plain.vdev, 0), 'EOPNOTSUPP', /vfio0 is no TPH completer/);
    const h = vfioHost({ tphCompleter: PciTphCompleter.TPH_ONLY });
    expectErr(() => vfioPciTphStats(h.vdev, 1), 'EINVAL', /bar 1: vfio0 has no such BAR/);
    expect(vfioPciTphStats(h.vdev, 0).unhinted.runs).toBe(0);
  });
});
