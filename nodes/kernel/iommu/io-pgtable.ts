/**
 * IoPgtable: the kernel (writer) side of a domain's translation table in shared memory, after
 * Linux io-pgtable. Layout and the reader's walk are in fabric/iommu-layout.ts and fabric/dma.ts.
 *
 * The table is one growable SharedArrayBuffer: header, a directory of 1-based leaf numbers,
 * then 4 KiB leaves of 512 two-word PTEs. Leaves are appended (the SAB grows) the first time an
 * IOVA in their 2 MiB span is mapped and are never freed, so a directory slot changes once.
 *
 * Thread: kernel only; single writer, so writes need no lock, only publication order. Readers
 * (device workers) never block the writer and the writer never waits for them.
 */
import { err } from '../../../common/errno.ts';
import {
  IOMMU_READ,
  IOMMU_WRITE,
  type IommuDomainType,
  LEAF_ENTRIES,
  LEAF_SHIFT,
  LEAF_WORDS,
  PGTABLE_HDR_WORDS,
  PGTABLE_MAGIC,
  PgtableHdr,
  PTE_PFN_HI_MASK,
  PTE_PFN_HI_SHIFT,
  PTE_PRESENT,
  PTE_SEQ_MASK,
  PTE_SEQ_SHIFT,
  Pte,
  pgtableDirWords,
  pteWord,
} from '../../fabric/iommu-layout.ts';
import { hex, PAGE_SIZE } from '../../fabric/page.ts';

const TWO32 = 2 ** 32;
/** Upper bound of one table SAB (virtual reservation; pages are committed as leaves appear). */
export const MAX_PGTABLE_BYTES = 2 ** 30;

/** One present PTE, decoded. */
export interface PteInfo {
  phys: number;
  prot: number;
}

export class IoPgtable {
  readonly sab: SharedArrayBuffer;
  readonly apertureBits: number;
  readonly dirWords: number;
  private words: Int32Array;
  private leaves = 0;
  private readonly maxLeaves: number;

  /**
   * Create the table of domain `domainId`. `apertureBits` 0 makes a header-only table (IDENTITY
   * and BLOCKED domains: readers check the type and never walk).
   */
  constructor(domainId: number, type: IommuDomainType, apertureBits: number) {
    this.apertureBits = apertureBits;
    this.dirWords = apertureBits === 0 ? 0 : pgtableDirWords(apertureBits);
    const base = (PGTABLE_HDR_WORDS + this.dirWords) * 4;
    const full = base + this.dirWords * LEAF_WORDS * 4;
    const max = Math.min(full, MAX_PGTABLE_BYTES);
    this.maxLeaves = Math.floor((max - base) / (LEAF_WORDS * 4));
    this.sab = new SharedArrayBuffer(base, { maxByteLength: max });
    this.words = new Int32Array(this.sab, 0, base >> 2);
    const w = this.words;
    w[PgtableHdr.TYPE] = type;
    w[PgtableHdr.DOMAIN_ID] = domainId;
    w[PgtableHdr.APERTURE_BITS] = apertureBits;
    w[PgtableHdr.DIR_WORDS] = this.dirWords;
    // publish: MAGIC last; readers get the SAB by postMessage after this anyway.
    Atomics.store(w, PgtableHdr.MAGIC, PGTABLE_MAGIC);
  }

  /** First IOVA beyond the aperture. */
  get limit(): number {
    return 2 ** this.apertureBits;
  }

  /** Leaves allocated so far. */
  get leafCount(): number {
    return this.leaves;
  }

  /**
   * Map `pages` pages from `iova` to `paddr` with IOMMU_READ/IOMMU_WRITE in `prot`. All pages
   * must be unmapped; on EEXIST nothing stays mapped. Arguments are pre-validated by iommuMap.
   * Throws: EEXIST naming the first mapped IOVA; ENOMEM when the table hits MAX_PGTABLE_BYTES.
   */
  map(iova: number, paddr: number, pages: number, prot: number): void {
    const first = iova / PAGE_SIZE;
    const ppfn = paddr / PAGE_SIZE;
    const bits = PTE_PRESENT | ((prot & (IOMMU_READ | IOMMU_WRITE)) << 1);
    for (let i = 0; i < pages; i++) {
      const e = this.entry(first + i, true);
      if ((Atomics.load(this.words, e + Pte.CTL) & PTE_PRESENT) !== 0) {
        if (i > 0) this.unmap(iova, i);
        throw err('EEXIST', `iommuMap: iova ${hex(iova + i * PAGE_SIZE)} is already mapped`);
      }
      const pfn = ppfn + i;
      const hi = Math.floor(pfn / TWO32);
      this.writePte(e, bits | ((hi & PTE_PFN_HI_MASK) << PTE_PFN_HI_SHIFT), (pfn % TWO32) | 0);
    }
    Atomics.add(this.words, PgtableHdr.MAP_SEQ, 1);
  }

  /**
   * Unmap up to `pages` pages from `iova`, stopping at the first page that is not mapped (like
   * __iommu_unmap). Returns the number of pages unmapped.
   */
  unmap(iova: number, pages: number): number {
    const first = iova / PAGE_SIZE;
    let n = 0;
    for (; n < pages; n++) {
      const e = this.entry(first + n, false);
      if (e < 0 || (Atomics.load(this.words, e + Pte.CTL) & PTE_PRESENT) === 0) break;
      this.clearPte(e);
    }
    Atomics.add(this.words, PgtableHdr.MAP_SEQ, 1);
    return n;
  }

  /** Decode the PTE for `iova`, or null if not present. */
  lookup(iova: number): PteInfo | null {
    if (iova >= this.limit) return null;
    const e = this.entry(Math.floor(iova / PAGE_SIZE), false);
    if (e < 0) return null;
    const ctl = Atomics.load(this.words, e + Pte.CTL);
    if ((ctl & PTE_PRESENT) === 0) return null;
    const pfn = ((ctl >>> PTE_PFN_HI_SHIFT) & PTE_PFN_HI_MASK) * TWO32 + (this.words[e + Pte.PFN_LO] >>> 0);
    return { phys: pfn * PAGE_SIZE + (iova % PAGE_SIZE), prot: (ctl >>> 1) & (IOMMU_READ | IOMMU_WRITE) };
  }

  /**
   * Word index of the PTE for IOVA page `pfn`, creating its leaf when `create`; -1 if there is
   * no leaf and `create` is false.
   */
  private entry(pfn: number, create: boolean): number {
    const slot = PGTABLE_HDR_WORDS + Math.floor(pfn / LEAF_ENTRIES);
    let leaf = this.words[slot];
    if (leaf === 0) {
      if (!create) return -1;
      leaf = this.addLeaf();
      // publish the leaf after growing: a reader that loads this slot finds the leaf in the SAB.
      Atomics.store(this.words, slot, leaf);
    }
    return pteWord(this.dirWords, leaf, pfn % LEAF_ENTRIES);
  }

  private addLeaf(): number {
    if (this.leaves >= this.maxLeaves) {
      throw err(
        'ENOMEM',
        `iommuMap: page table full (${this.leaves} leaves, ${hex(MAX_PGTABLE_BYTES)} bytes)`,
      );
    }
    const leaf = ++this.leaves;
    const need = (PGTABLE_HDR_WORDS + this.dirWords + leaf * LEAF_WORDS) * 4;
    if (need > this.sab.byteLength) {
      // grow geometrically; the new bytes are zero, i.e. non-present PTEs.
      this.sab.grow(Math.min(this.sab.maxByteLength, Math.max(need, this.sab.byteLength * 2)));
      this.words = new Int32Array(this.sab, 0, this.sab.byteLength >> 2);
    }
    this.words[PgtableHdr.LEAF_COUNT] = leaf;
    return leaf;
  }

  /** Fill a non-present PTE: PFN_LO first, then CTL (PRESENT, prot, pfn high, new sequence). */
  private writePte(e: number, ctlBits: number, pfnLo: number): void {
    const seq = this.nextSeq(e);
    // payload first: PFN_LO is only written while the PTE is not present.
    Atomics.store(this.words, e + Pte.PFN_LO, pfnLo);
    // publish: readers load CTL before and after PFN_LO, so they see both words of one mapping.
    Atomics.store(this.words, e + Pte.CTL, seq | ctlBits);
  }

  /** Clear PRESENT with a new sequence; PFN_LO is left as is (readers stop at PRESENT). */
  private clearPte(e: number): void {
    // one store: a reader that already passed the first CTL load retries on the changed sequence.
    Atomics.store(this.words, e + Pte.CTL, this.nextSeq(e));
  }

  private nextSeq(e: number): number {
    return (((Atomics.load(this.words, e + Pte.CTL) >>> PTE_SEQ_SHIFT) + 1) & PTE_SEQ_MASK) << PTE_SEQ_SHIFT;
  }
}

/** Leaf span in bytes (2 MiB): an IOVA range inside one span never allocates two leaves. */
export const LEAF_SPAN_BYTES = PAGE_SIZE << LEAF_SHIFT;
