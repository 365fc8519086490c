/**
 * The device side of IOMMU translation: walking a domain's shared page table (iommu-layout.ts)
 * and caching what the walk found in a per-device IOTLB.
 *
 * Device side only: imports fabric/ and common/. One Iotlb belongs to one DmaCtx, which belongs
 * to one thread; the cache is plain (unshared) typed arrays, so a hit costs no Atomics at all.
 *
 * DOC: IOTLB (strict invalidation)
 * An entry caches an extent: one IOVA page and the pages after it in the same page-table leaf
 * that are present, have the same READ/WRITE bits and are physically contiguous (at most as many
 * as the access that filled it needed). Only present PTEs are cached, never a miss, so a map
 * needs no invalidation: iommuMap() refuses to overwrite a present PTE. Everything that can make
 * an entry wrong (unmap, attach/detach, a phys map change) is followed by the kernel bumping the
 * device's DevCtx.INVAL word, and the device loads INVAL before every run it translates
 * (fabric/dma.ts): a changed word flushes the whole cache. This is strict mode (iommu.strict=1):
 * once iommuUnmap() returns, the next run any device starts walks the table again. A run already
 * translated may still be copied, like TLPs in flight before an invalidation completes.
 *
 * Costs, measured on Node 20: Atomics.load is a builtin call (~9 ns), a plain typed-array read
 * ~1.5 ns. A walk reads three words per PTE (seqlock); a hit reads four plain words per extent.
 */
import {
  IommuFaultReason,
  LEAF_ENTRIES,
  LEAF_SHIFT,
  LEAF_WORDS,
  PGTABLE_HDR_WORDS,
  PTE_PFN_HI_MASK,
  PTE_PFN_HI_SHIFT,
  PTE_PRESENT,
  PTE_READ,
  PTE_WRITE,
  PgtableHdr,
  Pte,
  type IommuDomainType,
} from './iommu-layout.ts';
import { PAGE_SIZE } from './page.ts';

/** A domain's table as it crosses to a worker. */
export interface DmaDomainDescriptor {
  id: number;
  type: IommuDomainType;
  /** The domain's page table SAB (growable); header only for IDENTITY and BLOCKED. */
  sab: SharedArrayBuffer;
}

/** Reader state of one domain table. */
export class DomainTables {
  readonly id: number;
  readonly type: IommuDomainType;
  readonly sab: SharedArrayBuffer;
  /** Fixed-length view (fast); rebuilt when a leaf lies past its end. */
  words: Int32Array;
  readonly dirWords: number;
  /** First IOVA beyond the aperture. */
  readonly limit: number;

  constructor(d: DmaDomainDescriptor) {
    this.id = d.id;
    this.type = d.type;
    this.sab = d.sab;
    this.words = new Int32Array(d.sab, 0, d.sab.byteLength >> 2);
    this.dirWords = this.words[PgtableHdr.DIR_WORDS];
    this.limit = 2 ** this.words[PgtableHdr.APERTURE_BITS];
  }
}

/**
 * Entries of a device's IOTLB: direct mapped by a Fibonacci hash of the IOVA page, so aligned
 * buffers (IOVA allocators align) do not all land in the same few slots. A power of two.
 */
export const IOTLB_ENTRIES = 4096;
const kHashShift = 32 - Math.log2(IOTLB_ENTRIES);

// Hot-path constants as module locals (an imported binding may cost a getter call under a CJS
// transpile; a module-local const costs nothing either way).
const kPage = PAGE_SIZE;
const kHdr = PGTABLE_HDR_WORDS;
const kLeafShift = LEAF_SHIFT;
const kLeafWords = LEAF_WORDS;
const kLeafEntries = LEAF_ENTRIES;
const kLeafMask = LEAF_ENTRIES - 1;
const kCtl = Pte.CTL;
const kPfnLo = Pte.PFN_LO;
const kPresent = PTE_PRESENT;
const kPermBits = PTE_READ | PTE_WRITE;
const kPfnHiShift = PTE_PFN_HI_SHIFT;
const kPfnHiMask = PTE_PFN_HI_MASK;
const kNotPresent = IommuFaultReason.NOT_PRESENT;
/** IOVA pages are < 2^28 (aperture <= 2^40): a key is epoch * 2^28 + page, exact in a double. */
const kEpochScale = 2 ** 28;
const kEpochLimit = 2 ** 24;

/** A per-device translation cache. Owned by one DmaCtx (one thread). */
export class Iotlb {
  /** epoch * 2^28 + IOVA page of each entry; an entry of an older epoch is empty. */
  readonly key = new Float64Array(IOTLB_ENTRIES).fill(-1);
  /** Bumped by flush(): every entry of an older epoch stops matching (O(1) flush). */
  epoch = 0;
  /** Physical address of the entry's first page. */
  readonly phys = new Float64Array(IOTLB_ENTRIES);
  /** Pages in the extent (>= 1). */
  readonly pages = new Int32Array(IOTLB_ENTRIES);
  /** PTE_READ | PTE_WRITE bits every page of the extent has. */
  readonly perm = new Int32Array(IOTLB_ENTRIES);
  /** Walks (misses) and flushes since creation (diagnostics, tests). */
  misses = 0;
  flushes = 0;

  /** Drop every entry. Called by: DmaCtx.sync() when DevCtx.INVAL moved. */
  flush(): void {
    this.flushes++;
    // keys stay exact doubles while epoch * 2^28 + page < 2^53: start over long before that.
    if (++this.epoch >= kEpochLimit) {
      this.key.fill(-1);
      this.epoch = 0;
    }
  }
}

/**
 * The IOTLB slot holding IOVA page `pfn` of `dom` (a paging domain; `pfn` below the aperture),
 * filling it by a table walk on a miss that covers up to `want` pages. Returns the slot (>= 0),
 * or -NOT_PRESENT. The caller checks the slot's perm against its access.
 * Called by: fabric/dma.ts, device thread. Allocation-free.
 */
export function iotlbLookup(tlb: Iotlb, dom: DomainTables, pfn: number, want: number): number {
  const s = Math.imul(pfn, 0x9e3779b1) >>> kHashShift;
  const key = tlb.epoch * kEpochScale + pfn;
  if (tlb.key[s] === key) return s;
  return iotlbFill(tlb, dom, pfn, want, s, key);
}

function iotlbFill(tlb: Iotlb, dom: DomainTables, pfn: number, want: number, s: number, key: number): number {
  tlb.misses++;
  let w = dom.words;
  // directory slots change only 0 -> n; loading n makes the leaf's bytes (grown first) visible.
  const leaf = Atomics.load(w, kHdr + (pfn >>> kLeafShift));
  if (leaf === 0) return -kNotPresent;
  let e = kHdr + dom.dirWords + (leaf - 1) * kLeafWords + ((pfn & kLeafMask) << 1);
  const room = kLeafEntries - (pfn & kLeafMask);
  const max = want < room ? (want > 0 ? want : 1) : room;
  if (e + (max << 1) > w.length) {
    // the table grew since this view was made (slow path, once per growth).
    w = dom.words = new Int32Array(dom.sab, 0, dom.sab.byteLength >> 2);
    if (e + kPfnLo >= w.length) return -kNotPresent; // unreachable with a well-behaved kernel; never throw
  }
  let first = 0;
  let perm = 0;
  let n = 0;
  while (n < max && e + kPfnLo < w.length) {
    // seqlock read: CTL, then PFN_LO, then CTL again; a changed CTL means a concurrent (un)map.
    const ctl = Atomics.load(w, e + kCtl);
    if ((ctl & kPresent) === 0) break;
    const lo = Atomics.load(w, e + kPfnLo);
    if (Atomics.load(w, e + kCtl) !== ctl) continue;
    const phys = ((ctl >>> kPfnHiShift) & kPfnHiMask) * 2 ** 44 + (lo >>> 0) * kPage;
    if (n === 0) {
      first = phys;
      perm = ctl & kPermBits;
    } else if (phys !== first + n * kPage || (ctl & kPermBits) !== perm) break;
    n++;
    e += 2;
  }
  if (n === 0) return -kNotPresent;
  tlb.key[s] = key;
  tlb.phys[s] = first;
  tlb.pages[s] = n;
  tlb.perm[s] = perm;
  return s;
}
