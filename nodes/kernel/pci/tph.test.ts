// The PCI TPH core (kernel-semantics §4.2 rules 1-5, §4.5 rules 9-11 and 14, §4.6 scenarios
// 1-3): enabling with the requester type lowered to the completer, the CPU steering tags of the
// root port _DSM stand-in, and ST table writes in the capability and in MSI-X.
import { describe, expect, it } from 'vitest';
import { expectErr } from '../../../test/support/expect-errno.ts';
import { directDevice } from '../device.ts';
import {
  type PciTphCap,
  PciTphLoc,
  type PciTphOptions,
  PciTphReqType,
  PciTphStMode,
  pciTphInit,
  pciTphOf,
  pciTphRelease,
  pciTphSetNoTph,
  pciTphStEntry,
  pcieDisableTph,
  pcieEnableTph,
  pcieTphGetCpuSt,
  pcieTphGetReqType,
  pcieTphGetStTableLoc,
  pcieTphGetStTableSize,
  pcieTphSetStEntry,
  TphMemType,
} from './tph.ts';

const ALL = [PciTphStMode.NS, PciTphStMode.IV, PciTphStMode.DS];
const capTable = (o: Partial<PciTphCap> = {}): PciTphCap => ({
  modes: ALL,
  extSt: true,
  stTable: PciTphLoc.CAP,
  stSize: 16,
  ...o,
});
let n = 0;
/** A fresh function with a TPH state on a fresh "kernel". */
function fn(opts: PciTphOptions = { cap: capTable() }) {
  const kernel = {};
  const dev = directDevice(`fn${n++}`);
  pciTphInit(kernel, dev, opts);
  return { kernel, dev };
}

describe('PCI TPH core', () => {
  it('tph - the requester type is the function capability lowered to the completer support (scenario 1)', () => {
    const cases: [boolean, number, number][] = [
      [true, PciTphReqType.EXT_TPH, PciTphReqType.EXT_TPH],
      [true, PciTphReqType.TPH_ONLY, PciTphReqType.TPH_ONLY],
      [false, PciTphReqType.EXT_TPH, PciTphReqType.TPH_ONLY],
      [false, PciTphReqType.TPH_ONLY, PciTphReqType.TPH_ONLY],
    ];
    for (const [extSt, completer, want] of cases) {
      const { dev } = fn({ cap: capTable({ extSt }), completer: completer as PciTphReqType });
      pcieEnableTph(dev, PciTphStMode.DS);
      expect(pcieTphGetReqType(dev), `extSt ${extSt} completer ${completer}`).toBe(want);
      const t = pciTphOf(dev)!;
      expect([t.enabled, t.ctrlReqEn, t.ctrlMode]).toEqual([true, want, PciTphStMode.DS]);
    }
    // no completer support: enable fails and nothing is enabled
    const { dev } = fn({ cap: capTable(), completer: PciTphReqType.DISABLE });
    expectErr(() => pcieEnableTph(dev, PciTphStMode.DS), 'EINVAL', /completer of fn\d+ does not support TPH/);
    expect(pciTphOf(dev)!.enabled).toBe(false);
    // an RC integrated endpoint has no root port to lower it
    const rc = fn({ cap: capTable(), completer: PciTphReqType.DISABLE, rcIntegrated: true });
    pcieEnableTph(rc.dev, PciTphStMode.DS);
    expect(pcieTphGetReqType(rc.dev)).toBe(PciTphReqType.EXT_TPH);
  });

  it('tph - enable refuses EBUSY when enabled and EINVAL without capability, for an unsupported mode and under notph', () => {
    const { kernel, dev } = fn({ cap: capTable({ modes: [PciTphStMode.NS, PciTphStMode.DS] }) });
    expectErr(() => pcieEnableTph(dev, PciTphStMode.IV), 'EINVAL', /mode IV is not supported by fn/);
    expectErr(() => pcieEnableTph(dev, 3), 'EINVAL', /mode 3 is not an ST mode/);
    pciTphSetNoTph(kernel, true);
    expectErr(() => pcieEnableTph(dev, PciTphStMode.DS), 'EINVAL', /disabled system-wide \(notph\)/);
    pciTphSetNoTph(kernel, false);
    pcieEnableTph(dev, PciTphStMode.DS);
    expectErr(() => pcieEnableTph(dev, PciTphStMode.DS), 'EBUSY', /already enabled on fn/);
    const none = fn({ cap: null });
    expectErr(() => pcieEnableTph(none.dev, PciTphStMode.NS), 'EINVAL', /has no TPH capability/);
    expectErr(
      () => pcieEnableTph(directDevice('bare'), PciTphStMode.NS),
      'EINVAL',
      /bare has no TPH capability/,
    );
  });

  it('tph - disable clears the control register and the cached state; it is a no-op when off', () => {
    const { dev } = fn();
    pcieDisableTph(dev); // off already: nothing happens
    pcieEnableTph(dev, PciTphStMode.IV);
    pcieDisableTph(dev);
    const t = pciTphOf(dev)!;
    expect([t.enabled, t.mode, t.reqType, t.ctrlMode, t.ctrlReqEn]).toEqual([false, 0, 0, 0, 0]);
    pcieEnableTph(dev, PciTphStMode.DS); // may be enabled again
    pciTphRelease(dev);
    expect(pciTphOf(dev)).toBeNull();
  });

  it('tph - CPU steering tags: VM vs PM, valid bits, 8- or 16-bit by requester type (scenario 2)', () => {
    const { dev } = fn({ cap: capTable(), completer: PciTphReqType.TPH_ONLY });
    // not enabled: requester type DISABLE gives tag 0
    expect(pcieTphGetCpuSt(dev, TphMemType.VM, 3)).toBe(0);
    pcieEnableTph(dev, PciTphStMode.DS);
    expect(pcieTphGetCpuSt(dev, TphMemType.VM, 3)).toBe(0x23);
    expect(pcieTphGetCpuSt(dev, TphMemType.PM, 2)).toBe(0x42);
    expect(pcieTphGetCpuSt(dev, TphMemType.PM, 3)).toBe(0); // PM entry invalid on odd CPUs
    const ext = fn({ cap: capTable() });
    pcieEnableTph(ext.dev, PciTphStMode.DS);
    expect(pcieTphGetCpuSt(ext.dev, TphMemType.VM, 3)).toBe(0x1003);
    expect(pcieTphGetCpuSt(ext.dev, TphMemType.PM, 2)).toBe(0x2002);
    expect(pcieTphGetCpuSt(ext.dev, TphMemType.PM, 3)).toBe(0);
    expectErr(() => pcieTphGetCpuSt(ext.dev, TphMemType.VM, 8), 'EINVAL', /_DSM of fn\d+ failed for cpu 8/);
    expectErr(() => pcieTphGetCpuSt(ext.dev, 2, 0), 'EINVAL', /memType 2/);
    expectErr(() => pcieTphGetCpuSt(ext.dev, TphMemType.VM, -1), 'EINVAL', /cpu -1/);
    const noRp = fn({ cap: capTable(), noRootPort: true });
    expectErr(() => pcieTphGetCpuSt(noRp.dev, TphMemType.VM, 0), 'ENODEV', /no root port/);
    // a firmware table of the caller's: invalid entries give 0
    const fw = fn({
      cap: capTable(),
      dsm: (cpu) => ({
        vmSt: 0x11,
        vmStValid: true,
        vmXst: 0xbeef,
        vmXstValid: cpu === 0,
        pmSt: 0,
        pmStValid: false,
        pmXst: 0,
        pmXstValid: false,
      }),
    });
    pcieEnableTph(fw.dev, PciTphStMode.DS);
    expect([0, 1].map((c) => pcieTphGetCpuSt(fw.dev, TphMemType.VM, c))).toEqual([0xbeef, 0]);
  });

  it('tph - ST table in the capability: its size, writes in bounds, ENXIO past it turns TPH off (scenario 3)', () => {
    const { dev } = fn({ cap: capTable({ stSize: 4 }) });
    expect([pcieTphGetStTableLoc(dev), pcieTphGetStTableSize(dev)]).toEqual([PciTphLoc.CAP, 4]);
    expectErr(() => pcieTphSetStEntry(dev, 1, 0x2a), 'EINVAL', /TPH is not enabled on fn/);
    pcieEnableTph(dev, PciTphStMode.DS);
    pcieTphSetStEntry(dev, 3, 0x1234);
    expect(pciTphStEntry(dev, 3)).toBe(0x1234);
    const t = pciTphOf(dev)!;
    expect(t.ctrlReqEn).toBe(PciTphReqType.EXT_TPH); // re-enabled after the write
    expectErr(() => pcieTphSetStEntry(dev, 1, 0x10000), 'EINVAL', /tag 65536 is not a 16-bit/);
    expectErr(() => pcieTphSetStEntry(dev, -1, 1), 'EINVAL', /index -1/);
    expect(t.enabled).toBe(true); // argument errors change nothing
    expectErr(
      () => pcieTphSetStEntry(dev, 4, 1),
      'ENXIO',
      /index 4 is past the ST table of fn\d+ \(4 entries\)/,
    );
    expect([t.enabled, t.ctrlReqEn, pcieTphGetReqType(dev)]).toEqual([false, 0, 0]);
  });

  it('tph - ST table in MSI-X: table size 0, one tag per vector, a write with MSI-X off fails and turns TPH off', () => {
    const { dev } = fn({ cap: capTable({ stTable: PciTphLoc.MSIX, stSize: 8 }) });
    expect([pcieTphGetStTableLoc(dev), pcieTphGetStTableSize(dev)]).toEqual([PciTphLoc.MSIX, 0]);
    pcieEnableTph(dev, PciTphStMode.IV);
    pcieTphSetStEntry(dev, 7, 0x77);
    expect(pciTphStEntry(dev, 7)).toBe(0x77);
    expectErr(() => pcieTphSetStEntry(dev, 8, 1), 'ENXIO', /index 8: fn\d+ has 8 MSI-X vectors/);
    expect(pciTphOf(dev)!.enabled).toBe(false);
    pcieEnableTph(dev, PciTphStMode.IV);
    pciTphOf(dev)!.msixEnabled = false;
    expectErr(() => pcieTphSetStEntry(dev, 0, 1), 'ENXIO', /MSI-X is not enabled/);
    expect(pciTphOf(dev)!.enabled).toBe(false);
    // no ST table at all: the write fails EINVAL and TPH goes off too
    const none = fn({ cap: capTable({ stTable: PciTphLoc.NONE }) });
    pcieEnableTph(none.dev, PciTphStMode.DS);
    expectErr(() => pcieTphSetStEntry(none.dev, 0, 1), 'EINVAL', /has no ST table \(location NONE\)/);
    expect(pciTphOf(none.dev)!.enabled).toBe(false);
  });

  it('tph - in No-ST mode an ST write is a no-op that succeeds, even past the table', () => {
    const { dev } = fn({ cap: capTable({ stSize: 2 }) });
    pcieEnableTph(dev, PciTphStMode.NS);
    pcieTphSetStEntry(dev, 1, 0x2a);
    pcieTphSetStEntry(dev, 100, 0x2a);
    expect([pciTphStEntry(dev, 1), pciTphOf(dev)!.enabled]).toEqual([0, true]);
  });

  it('tph - init validates its arguments and refuses a second state for one function', () => {
    const kernel = {};
    const dev = directDevice('dup');
    pciTphInit(kernel, dev, {});
    expectErr(() => pciTphInit(kernel, dev, {}), 'EEXIST', /dup already has a TPH state/);
    expectErr(
      () => pciTphInit(kernel, directDevice('x'), { cap: capTable({ stSize: 4096 }) }),
      'EINVAL',
      /cap.stSize 4096/,
    );
    expectErr(
      () => pciTphInit(kernel, directDevice('y'), { completer: 2 as PciTphReqType }),
      'EINVAL',
      /completer 2 is not a TPH completer type/,
    );
  });

  it('tph - the device model sees each requester-enable and ST entry write through its mirror, in hardware order', () => {
    const log: string[] = [];
    const mirror = {
      reqEn: (t: number) => log.push(`en ${t}`),
      stEntry: (i: number, tag: number) => log.push(`st ${i}=${tag}`),
    };
    const { dev } = fn({ cap: capTable({ extSt: false, stSize: 4 }), mirror });
    pcieEnableTph(dev, PciTphStMode.DS);
    pcieTphSetStEntry(dev, 1, 0x2a);
    expect(() => pcieTphSetStEntry(dev, 9, 1)).toThrow(/ENXIO/); // turns TPH off
    expect(log).toEqual(['en 1', 'en 0', 'st 1=42', 'en 1', 'en 0', 'en 0']);
  });
});
