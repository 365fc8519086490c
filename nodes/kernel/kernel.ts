/**
 * One emulated host's kernel: its physical address map, RAM, IOMMU, dma-heaps and devices.
 * Built by host boot (and by tests and the demo directly); userspace reaches it only through
 * nodes/uapi.
 *
 * Thread: the kernel (main thread) owns every allocator created here.
 */
import { err } from '../../common/errno.ts';
import { type Device, iommuDevice } from './device.ts';
import { DmaHeapRegistry } from './dma-buf/heaps/dma-heap.ts';
import { systemHeapCreate } from './dma-buf/heaps/system-heap.ts';
import type { MockExporterEnv } from './dma-buf/mock-exporter.ts';
import {
  Iommu,
  IommuDomainType,
  iommuAttachDevice,
  iommuDomainAlloc,
  iommuDomainFree,
  iommuDetachDevice,
  type IommuDomain,
} from './iommu/iommu.ts';
import { PageAllocator } from './mm/page-alloc.ts';
import { PhysMap } from './mm/phys-map.ts';
import { MemRegionKind, type MemRegion, memRegionCreate } from './mm/region.ts';
import { type PhysArenaDescriptor, physArenaCreate } from '../fabric/phys-arena.ts';

export interface HostKernelOptions {
  name?: string;
  /** Host RAM in bytes (default 64 MiB). */
  ramBytes?: number;
}

interface DeviceEntry {
  device: Device;
  domain: IommuDomain;
  iommuId: number;
}

export class HostKernel {
  readonly name: string;
  readonly physMap = new PhysMap();
  readonly ram: MemRegion;
  readonly ramAlloc: PageAllocator;
  readonly iommu: Iommu;
  readonly heaps = new DmaHeapRegistry();
  /** Backing of this host's regions (null: none could be reserved; each region has its own SAB). */
  readonly arena: PhysArenaDescriptor | null = physArenaCreate();
  private readonly devices = new Map<string, DeviceEntry>();
  private nextIommuId = 1;
  private nextMemory = 0;
  private closed = false;

  constructor(opts: HostKernelOptions = {}) {
    this.name = opts.name ?? 'host0';
    this.ram = memRegionCreate(`${this.name}:ram`, MemRegionKind.RAM, opts.ramBytes ?? 64 << 20, this.arena);
    this.physMap.addRam(this.ram);
    this.ramAlloc = new PageAllocator(this.ram);
    this.iommu = new Iommu(this.physMap, { arena: this.arena });
    this.heaps.add('system', systemHeapCreate(this.ramAlloc, this.physMap), null);
  }

  /**
   * Add a DMA-capable device behind the IOMMU, in its own DMA domain (or an identity domain).
   * Throws: EEXIST if the name is taken; EINVAL naming the name; ENODEV once the kernel is closed.
   */
  addDevice(name: string, opts: { identity?: boolean; pciId?: string } = {}): Device {
    if (typeof name !== 'string' || name === '') throw err('EINVAL', 'HostKernel.addDevice: name missing');
    if (this.closed) throw err('ENODEV', `HostKernel.addDevice: host ${this.name} is closed`);
    if (this.devices.has(name)) throw err('EEXIST', `HostKernel.addDevice: device ${name} exists`);
    const iommuId = this.nextIommuId++;
    this.iommu.probeDevice(iommuId);
    const domain = iommuDomainAlloc(
      this.iommu,
      opts.identity ? IommuDomainType.IDENTITY : IommuDomainType.DMA,
    );
    iommuAttachDevice(domain, iommuId);
    const device = iommuDevice(name, iommuId, domain, opts.pciId);
    this.devices.set(name, { device, domain, iommuId });
    return device;
  }

  device(name: string): Device {
    const e = this.devices.get(name);
    if (!e) throw err('ENODEV', `host ${this.name}: no device named ${JSON.stringify(name)}`);
    return e.device;
  }

  /** The IOMMU domain a device was given by addDevice. */
  domainOf(name: string): IommuDomain {
    const e = this.devices.get(name);
    if (!e) throw err('ENODEV', `host ${this.name}: no device named ${JSON.stringify(name)}`);
    return e.domain;
  }

  /** Device memory exposed as a BAR window (VRAM of a GPU or mock device), with its allocator. */
  addDeviceMemory(name: string, size: number): { region: MemRegion; alloc: PageAllocator } {
    const region = memRegionCreate(`${this.name}:${name}`, MemRegionKind.VRAM, size, this.arena);
    this.physMap.addBar(region, { name });
    return { region, alloc: new PageAllocator(region) };
  }

  /** An environment for MockExporter: this host's RAM plus a fresh device-memory region. */
  mockExporterEnv(vramBytes: number, opts: Partial<MockExporterEnv> = {}): MockExporterEnv {
    const vram = this.addDeviceMemory(`mock-vram${this.nextMemory++}`, vramBytes);
    return { physMap: this.physMap, ram: this.ramAlloc, vram: vram.alloc, ...opts };
  }

  /** Detach and free every device domain. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const e of this.devices.values()) {
      iommuDetachDevice(e.domain, e.iommuId);
      iommuDomainFree(e.domain);
    }
    this.devices.clear();
  }
}
