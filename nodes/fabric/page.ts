/**
 * Pages and addresses: the one module that defines PAGE_SIZE / PAGE_SHIFT for p2pemu. Kernel
 * (mm, iommu) and device workers (through fabric/dma.ts) both import it, so it imports nothing
 * from kernel/.
 *
 * Addresses (physical, bus, IOVA) are plain JS numbers. They must be safe integers below
 * 2^52 (MAX_ADDR): page frame numbers then fit in 40 bits, which is what the shared IOMMU
 * tables store, and `pfn * PAGE_SIZE` stays exact in a double. Bitwise operators are 32-bit in
 * JS, so page arithmetic on addresses uses division and multiplication, never `>>` or `&`.
 */

/** log2 of the page size: 4 KiB pages, as on x86-64. */
export const PAGE_SHIFT = 12;
/** Bytes per page. */
export const PAGE_SIZE = 1 << PAGE_SHIFT;
/** Mask of the in-page offset bits (valid on 32-bit values only; see pageOffset()). */
export const PAGE_MASK = PAGE_SIZE - 1;
/** Width of every address p2pemu handles (physical, bus and IOVA). */
export const MAX_ADDR_BITS = 52;
/** First address that is out of range: 2^52. */
export const MAX_ADDR = 2 ** MAX_ADDR_BITS;
/** Page frame numbers are below 2^40. */
export const MAX_PFN = MAX_ADDR / PAGE_SIZE;

/** True for a safe integer address in [0, 2^52). */
export function isAddr(addr: number): boolean {
  return Number.isInteger(addr) && addr >= 0 && addr < MAX_ADDR;
}

/** True when `addr` is a valid address on a page boundary. */
export function isPageAligned(addr: number): boolean {
  return isAddr(addr) && addr % PAGE_SIZE === 0;
}

/** True when [addr, addr + size) is a non-empty range inside [0, 2^52). */
export function isAddrRange(addr: number, size: number): boolean {
  return isAddr(addr) && Number.isInteger(size) && size > 0 && addr + size <= MAX_ADDR;
}

/** Page frame number of an address (floor). */
export function addrToPfn(addr: number): number {
  return Math.floor(addr / PAGE_SIZE);
}

/** Address of the first byte of page frame `pfn`. */
export function pfnToAddr(pfn: number): number {
  return pfn * PAGE_SIZE;
}

/** Offset of `addr` inside its page. Exact for any address below 2^52. */
export function pageOffset(addr: number): number {
  return addr % PAGE_SIZE;
}

/** Round a byte count up to whole pages (as a byte count). */
export function pageAlignUp(size: number): number {
  return Math.ceil(size / PAGE_SIZE) * PAGE_SIZE;
}

/** Number of pages spanned by [addr, addr + size). */
export function pagesSpanned(addr: number, size: number): number {
  return addrToPfn(addr + size - 1) - addrToPfn(addr) + 1;
}

/** Hex form used in every error message and trace payload: `0x1f000`. */
export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
