/**
 * IOMMU core: one Iommu per host, domains, device attachment, map/unmap (Linux iommu.c).
 *
 * Overview: every device (requester id) gets a context entry in shared memory naming the
 * domain it is attached to. A paging domain (UNMANAGED, DMA) owns an IoPgtable in a growable
 * SharedArrayBuffer; IDENTITY and BLOCKED domains have a header only. Device workers translate
 * on their own through fabric/dma.ts: the kernel hands each one a DmaCtxDescriptor
 * (iommuDeviceDmaCtx) and afterwards only writes shared memory and posts messages.
 *
 * Locking convention: none. The IOMMU is driven from the kernel's main thread only; device
 * workers read tables and append faults concurrently, which the publication order in
 * io-pgtable.ts and the fault ring make safe.
 *
 * Cross-driver contract:
 *   - iommuMap() refuses to overwrite a mapping (EEXIST): unmap first, as Linux drivers must.
 *   - iommuUnmap() takes effect for the next run each device translates: the PTEs are cleared,
 *     then every attached device's IOTLB is invalidated (DevCtx.INVAL, fabric/iotlb.ts: strict
 *     mode). There is no completion wait: a run a worker translated before may still be copied.
 *   - A device attached to no domain, or to a BLOCKED one, faults every IOVA access.
 *   - iommuAttachDevice() on a device that is attached elsewhere is EBUSY; detach first.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { err } from '../../../common/errno.ts';
import { trace } from '../../../common/trace.ts';
import type { DmaCtxDescriptor, DmaDomainDescriptor, DmaDomainUpdate } from '../../fabric/dma.ts';
import {
  DEV_CTX_WORDS,
  DevCtx,
  IOMMU_PROT_ALL,
  IOMMU_READ,
  IOMMU_WRITE,
  IommuDomainType,
  MAX_APERTURE_BITS,
  MIN_APERTURE_BITS,
} from '../../fabric/iommu-layout.ts';
import { hex, isAddr, isPageAligned, PAGE_SIZE } from '../../fabric/page.ts';
import { type PhysArenaDescriptor, physArenaCtlAlloc } from '../../fabric/phys-arena.ts';
import type { PhysMap } from '../mm/phys-map.ts';
import { IommuFaultLog } from './fault.ts';
import { IoPgtable } from './io-pgtable.ts';
import { IovaDomain } from './iova.ts';

export {
  IOMMU_CACHE,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_READ,
  IOMMU_WRITE,
  IommuDomainType,
} from '../../fabric/iommu-layout.ts';

/** Default IOVA aperture: 2^39 bytes (a 39-bit VT-d AGAW); the directory is 1 MiB. */
export const DEFAULT_APERTURE_BITS = 39;

/** Per-device state: the shared context entry and the kernel ends of the device's ctx ports. */
interface IommuDevice {
  id: number;
  ctx: Int32Array;
  domain: IommuDomain | null;
  ports: Set<MessagePort>;
}

let nextDomainId = 1;

export class IommuDomain {
  /** Unique in the process and never reused, so a worker's cache cannot confuse two domains. */
  readonly id: number;
  readonly type: IommuDomainType;
  readonly iommu: Iommu;
  /** Shared table (header only for IDENTITY/BLOCKED). */
  readonly pgtable: IoPgtable;
  /** IOVA allocator (paging domains): pfns of PAGE_SIZE from 1 to the aperture end. */
  readonly iovad: IovaDomain | null;
  readonly devices = new Set<number>();
  freed = false;

  constructor(iommu: Iommu, type: IommuDomainType, apertureBits: number) {
    this.id = nextDomainId++;
    this.type = type;
    this.iommu = iommu;
    const paging = type === IommuDomainType.UNMANAGED || type === IommuDomainType.DMA;
    this.pgtable = new IoPgtable(this.id, type, paging ? apertureBits : 0);
    this.iovad = paging
      ? new IovaDomain(PAGE_SIZE, 1, 2 ** (apertureBits - 12) - 1, `domain ${this.id}`)
      : null;
  }

  /** True for UNMANAGED and DMA domains (they have mappings). */
  get paging(): boolean {
    return this.iovad !== null;
  }

  /** What a worker needs to walk this domain. */
  descriptor(): DmaDomainDescriptor {
    return { id: this.id, type: this.type, sab: this.pgtable.sab };
  }
}

export class Iommu {
  readonly physMap: PhysMap;
  /** The host's memory arena, where device context entries live when it has room (or null). */
  private readonly arena: PhysArenaDescriptor | null;
  readonly faultLog: IommuFaultLog;
  readonly domains = new Map<number, IommuDomain>();
  private readonly devices = new Map<number, IommuDevice>();

  /** Throws: EINVAL naming faultRingSlots (see IommuFaultLog). */
  constructor(
    physMap: PhysMap,
    opts: { faultRingSlots?: number; faultHistory?: number; arena?: PhysArenaDescriptor | null } = {},
  ) {
    this.physMap = physMap;
    this.arena = opts.arena ?? null;
    this.faultLog = new IommuFaultLog(opts.faultRingSlots ?? 256, opts.faultHistory ?? 1024);
    // a new window must reach every device before its next run: the update is already queued
    // on their ports when this runs (PhysMap.publish).
    physMap.onPublish(() => {
      for (const d of this.devices.values()) iotlbInvalidate(d);
    });
  }

  /**
   * iommu_probe_device(): create the context entry of requester `deviceId` (idempotent). A new
   * device is attached to nothing: every IOVA access faults BLOCKED.
   * Throws: EINVAL naming deviceId (integer in [1, 2^31)).
   */
  probeDevice(deviceId: number): void {
    this.device(deviceId, 'iommuProbeDevice');
  }

  /** Domain currently attached to `deviceId`, or null (iommu_get_domain_for_dev). */
  domainForDev(deviceId: number): IommuDomain | null {
    return this.devices.get(deviceId)?.domain ?? null;
  }

  /** @internal device state, created on first use. */
  device(deviceId: number, fn: string): IommuDevice {
    if (!Number.isInteger(deviceId) || deviceId < 1 || deviceId > 0x7fffffff) {
      throw err('EINVAL', `${fn}: deviceId must be an integer in [1, 2^31), got ${deviceId}`);
    }
    let d = this.devices.get(deviceId);
    if (!d) {
      // in the host arena when there is one: a wasm device model loads INVAL there (mlx5-fast.ts).
      const inArena = this.arena !== null ? physArenaCtlAlloc(this.arena, DEV_CTX_WORDS * 4) : null;
      const ctx = inArena ?? new Int32Array(new SharedArrayBuffer(DEV_CTX_WORDS * 4));
      ctx[DevCtx.DEVICE_ID] = deviceId;
      ctx[DevCtx.IN_ARENA] = inArena !== null ? 1 : 0;
      d = { id: deviceId, ctx, domain: null, ports: new Set() };
      this.devices.set(deviceId, d);
    }
    return d;
  }
}

/**
 * iommu_domain_alloc(): a new domain of `type` on `iommu`.
 * Called by: DMA-API setup (DMA), vfio/iommufd (UNMANAGED), boot (IDENTITY), reset (BLOCKED).
 * Throws: EINVAL naming type or apertureBits (integer in [20, 40]).
 */
export function iommuDomainAlloc(
  iommu: Iommu,
  type: IommuDomainType,
  opts: { apertureBits?: number } = {},
): IommuDomain {
  if (!Object.values(IommuDomainType).includes(type)) {
    throw err('EINVAL', `iommuDomainAlloc: type must be an IommuDomainType, got ${String(type)}`);
  }
  const bits = opts.apertureBits ?? DEFAULT_APERTURE_BITS;
  if (!Number.isInteger(bits) || bits < MIN_APERTURE_BITS || bits > MAX_APERTURE_BITS) {
    throw err(
      'EINVAL',
      `iommuDomainAlloc: apertureBits must be an integer in [${MIN_APERTURE_BITS}, ${MAX_APERTURE_BITS}], got ${bits}`,
    );
  }
  const domain = new IommuDomain(iommu, type, bits);
  iommu.domains.set(domain.id, domain);
  return domain;
}

function checkDomain(fn: string, domain: IommuDomain): void {
  if (!(domain instanceof IommuDomain)) throw err('EINVAL', `${fn}: domain is not an IommuDomain`);
}

/** iommu_domain_free(). Throws: EBUSY while devices are attached. Idempotent once freed. */
export function iommuDomainFree(domain: IommuDomain): void {
  checkDomain('iommuDomainFree', domain);
  if (domain.freed) return;
  if (domain.devices.size > 0) {
    throw err(
      'EBUSY',
      `iommuDomainFree: domain ${domain.id} still has devices ${[...domain.devices].join(', ')}`,
    );
  }
  domain.freed = true;
  domain.iommu.domains.delete(domain.id);
}

/**
 * iommu_attach_device(): point `deviceId`'s context entry at `domain`. Posts the domain's
 * tables to every DMA ctx of the device first, then publishes the entry.
 * Throws: EINVAL (freed domain, bad deviceId); EBUSY if attached to another domain.
 */
export function iommuAttachDevice(domain: IommuDomain, deviceId: number): void {
  checkDomain('iommuAttachDevice', domain);
  if (domain.freed) throw err('EINVAL', `iommuAttachDevice: domain ${domain.id} was freed`);
  const dev = domain.iommu.device(deviceId, 'iommuAttachDevice');
  if (dev.domain === domain) return;
  if (dev.domain !== null) {
    throw err(
      'EBUSY',
      `iommuAttachDevice: device ${deviceId} is attached to domain ${dev.domain.id}; detach first`,
    );
  }
  const msg: DmaDomainUpdate = { type: 'domain', domain: domain.descriptor() };
  for (const p of dev.ports) p.postMessage(msg);
  dev.domain = domain;
  domain.devices.add(deviceId);
  // publish: the tables are queued on every ctx port before a worker can read this id.
  Atomics.store(dev.ctx, DevCtx.DOMAIN_ID, domain.id);
  Atomics.add(dev.ctx, DevCtx.ATTACH_SEQ, 1);
  iotlbInvalidate(dev);
}

/**
 * iommu_detach_device(): the device is left attached to nothing (all accesses BLOCKED).
 * Throws: EINVAL if `deviceId` is not attached to `domain`.
 */
export function iommuDetachDevice(domain: IommuDomain, deviceId: number): void {
  checkDomain('iommuDetachDevice', domain);
  const dev = domain.iommu.device(deviceId, 'iommuDetachDevice');
  if (dev.domain !== domain)
    throw err('EINVAL', `iommuDetachDevice: device ${deviceId} is not attached to domain ${domain.id}`);
  dev.domain = null;
  domain.devices.delete(deviceId);
  // from the next run on, the device's workers see no domain.
  Atomics.store(dev.ctx, DevCtx.DOMAIN_ID, 0);
  Atomics.add(dev.ctx, DevCtx.ATTACH_SEQ, 1);
  iotlbInvalidate(dev);
}

/**
 * Invalidate the IOTLB of `dev` (all its DMA contexts): after the table, context entry or phys
 * map change, so a worker that sees the new INVAL sees the change. Thread: kernel.
 */
function iotlbInvalidate(dev: IommuDevice): void {
  Atomics.add(dev.ctx, DevCtx.INVAL, 1);
}

/** Invalidate the IOTLB of every device attached to `domain` (iommu_iotlb_sync, strict). */
function domainIotlbSync(domain: IommuDomain): void {
  for (const id of domain.devices) {
    const dev = domain.iommu.device(id, 'iommu_iotlb_sync');
    iotlbInvalidate(dev);
  }
}

function checkPagingRange(fn: string, domain: IommuDomain, iova: number, size: number): void {
  checkDomain(fn, domain);
  if (domain.freed) throw err('EINVAL', `${fn}: domain ${domain.id} was freed`);
  if (!domain.paging)
    throw err('EINVAL', `${fn}: domain ${domain.id} is not a paging domain (type ${domain.type})`);
  if (!isPageAligned(iova)) throw err('EINVAL', `${fn}: iova ${iova} must be page aligned`);
  if (!Number.isInteger(size) || size <= 0 || size % PAGE_SIZE !== 0) {
    throw err('EINVAL', `${fn}: size ${size} must be a positive multiple of ${PAGE_SIZE}`);
  }
  if (iova + size > domain.pgtable.limit) {
    throw err(
      'EINVAL',
      `${fn}: iova range [${hex(iova)}, +${hex(size)}) exceeds the aperture ${hex(domain.pgtable.limit)}`,
    );
  }
}

/**
 * iommu_map(): map [iova, iova + size) to [paddr, paddr + size) with `prot`
 * (IOMMU_READ | IOMMU_WRITE, optionally IOMMU_CACHE/NOEXEC/MMIO, which translation ignores).
 * Like Linux, paddr need not be backed: a DMA to an unbacked address faults UNSUPPORTED_REQUEST.
 * Called by: dma-iommu (DMA API), vfio/iommufd. Thread: kernel.
 * Throws: EINVAL naming iova/paddr/size/prot or a non-paging domain; EEXIST if any page is
 * mapped (nothing is left mapped); ENOMEM if the table is full.
 */
export function iommuMap(domain: IommuDomain, iova: number, paddr: number, size: number, prot: number): void {
  checkPagingRange('iommuMap', domain, iova, size);
  if (!isPageAligned(paddr) || !isAddr(paddr + size - 1)) {
    throw err('EINVAL', `iommuMap: paddr ${paddr} must be page aligned with paddr + size <= 2^52`);
  }
  if (
    !Number.isInteger(prot) ||
    (prot & ~IOMMU_PROT_ALL) !== 0 ||
    (prot & (IOMMU_READ | IOMMU_WRITE)) === 0
  ) {
    throw err('EINVAL', `iommuMap: prot ${prot} must include IOMMU_READ or IOMMU_WRITE and no unknown bits`);
  }
  try {
    domain.pgtable.map(iova, paddr, size / PAGE_SIZE, prot);
  } catch (e) {
    // EEXIST unmapped the pages this call had already published, and a worker may hold them.
    // (ENOMEM leaves them mapped, which needs no invalidation: a map never does.)
    domainIotlbSync(domain);
    throw e;
  }
  trace('iommuMap', () => ({ domain: domain.id, iova, paddr, size, prot }));
}

/**
 * iommu_unmap(): unmap up to `size` bytes from `iova`; stops at the first hole. Returns the
 * bytes unmapped (0 if `iova` was not mapped). Throws: EINVAL naming iova/size.
 */
export function iommuUnmap(domain: IommuDomain, iova: number, size: number): number {
  checkPagingRange('iommuUnmap', domain, iova, size);
  const bytes = domain.pgtable.unmap(iova, size / PAGE_SIZE) * PAGE_SIZE;
  if (bytes > 0) domainIotlbSync(domain);
  trace('iommuUnmap', () => ({ domain: domain.id, iova, size, unmapped: bytes }));
  return bytes;
}

/**
 * iommu_iova_to_phys(): physical address for `iova`, or null if unmapped / blocked.
 * Throws: EINVAL for a freed domain (its tables no longer describe any device's view).
 */
export function iommuIovaToPhys(domain: IommuDomain, iova: number): number | null {
  checkDomain('iommuIovaToPhys', domain);
  if (domain.freed) throw err('EINVAL', `iommuIovaToPhys: domain ${domain.id} was freed`);
  if (domain.type === IommuDomainType.IDENTITY) return isAddr(iova) ? iova : null;
  if (!domain.paging || !isAddr(iova)) return null;
  return domain.pgtable.lookup(iova)?.phys ?? null;
}

/** Handle returned by iommuDeviceDmaCtx(): put `desc` in workerData and `transferList` alongside. */
export interface DmaCtxHandoff {
  desc: DmaCtxDescriptor;
  transferList: MessagePort[];
  /** Stop updates to this ctx and close the kernel end. Idempotent. */
  release(): void;
}

/**
 * Build the translation context for one worker (or kernel-side user) of device `deviceId`: its
 * context entry, the phys map, the attached domain's tables, the fault ring and a fresh update
 * port subscribed to phys map and attach updates. Each call makes a new port; hand each
 * descriptor to exactly one thread. Throws: EINVAL naming deviceId.
 */
export function iommuDeviceDmaCtx(iommu: Iommu, deviceId: number): DmaCtxHandoff {
  const dev = iommu.device(deviceId, 'iommuDeviceDmaCtx');
  const { port1, port2 } = new MessageChannel();
  dev.ports.add(port1);
  iommu.physMap.subscribe(port1);
  const desc: DmaCtxDescriptor = {
    deviceId,
    devCtx: dev.ctx,
    phys: iommu.physMap.descriptor(),
    domains: dev.domain ? [dev.domain.descriptor()] : [],
    faultRing: iommu.faultLog.sab,
    port: port2,
  };
  let released = false;
  return {
    desc,
    transferList: [port2],
    release() {
      if (released) return;
      released = true;
      dev.ports.delete(port1);
      iommu.physMap.unsubscribe(port1);
      port1.close();
    },
  };
}
