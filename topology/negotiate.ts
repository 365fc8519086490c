/**
 * dma-buf interconnect negotiation, as proposed on dri-devel in 2025 and built on
 * jgunthorpe/linux (kernel-semantics.md §5). Pure: offers in, `{ chosen, trace }` out; the
 * dma-buf core records `chosen` on the attachment and publishes `trace`.
 *
 * Both sides offer ordered lists of `{ type, ... }`. The core pairs entries of the same type
 * (§5.3 rule 2: other pairs are never matched), calls the type's match() (rule 3: a type
 * without one matches any same-type entry), skips a pair on EOPNOTSUPP and aborts on any other
 * error (rule 4), calls finish() once for the winner only (rule 5), and fails with EINVAL when
 * either list is empty or nothing matches (rule 6). Which pair wins depends on the policy:
 *
 *   exporter-order  outer loop over the exporter list (the published branch; rule 1)
 *   importer-order  outer loop over the importer list
 *   best-quality    every pair is matched; the one the timing model says moves a reference
 *                   transfer fastest wins (ties: fewer hops, then exporter order)
 *
 * Expected refusals are values (`{ ok: false, error }`); malformed offers and unknown types are
 * caller bugs and throw EmuError EINVAL.
 */
import { type EmuError, type ErrnoName, err } from '../common/errno.ts';
import type { Topology } from './model.ts';
import { type P2pdmaDecision, P2pdmaMapCache } from './p2pdma.ts';
import { BUILTIN_TYPES, defaultQuality, type Quality } from './interconnects.ts';

export const NegotiationPolicy = {
  EXPORTER_ORDER: 'exporter-order',
  IMPORTER_ORDER: 'importer-order',
  BEST_QUALITY: 'best-quality',
} as const;
export type NegotiationPolicy = (typeof NegotiationPolicy)[keyof typeof NegotiationPolicy];

/** One entry of an exporter's or importer's list. Type-specific fields ride along. */
export interface Offer {
  readonly type: string;
  /** Shown in traces ("mlx5_1", "VRAM via nvl0"). */
  readonly label?: string;
  readonly [field: string]: unknown;
}

export type MatchData = Readonly<Record<string, unknown>>;

/** What a type's match() says about one (exporter, importer) pair. */
export type MatchOutcome =
  | { readonly ok: true; readonly data?: MatchData }
  | { readonly ok: false; readonly code: ErrnoName; readonly reason: string };

export interface MatchContext {
  readonly topology: Topology | undefined;
  /** P2PDMA decision for (provider, client), cached per topology (§3.2 rule 6). */
  p2pdma(provider: string, client: string): P2pdmaDecision;
}

/** A dma_buf_mapping_type: one per interconnect kind. */
export interface MappingType {
  readonly name: string;
  /** Optional (rule 3). Must not throw for a refusal: return `{ ok: false, code }`. */
  match?(exp: Offer, imp: Offer, ctx: MatchContext): MatchOutcome;
  /** Called exactly once, with the winning pair (rule 5); its result is `chosen.data`. */
  finish?(exp: Offer, imp: Offer, data: MatchData, ctx: MatchContext): MatchData;
  /** True when the winner means the exporter keeps the buffer in system memory (a bounce). */
  systemPlacement?(exp: Offer, imp: Offer, data: MatchData): boolean;
}

export type QualityFn = (exp: Offer, imp: Offer, data: MatchData, ctx: MatchContext) => Quality | undefined;

export interface NegotiationContext {
  readonly policy?: NegotiationPolicy;
  readonly topology?: Topology;
  /** Mapping types by name; default: the five built-in interconnects. */
  readonly types?: ReadonlyMap<string, MappingType>;
  /** Quality estimate for best-quality; default: the timing model over `topology`. */
  readonly quality?: QualityFn;
  /** Size of the reference transfer quality is estimated for (default 1 MiB). */
  readonly referenceBytes?: number;
  readonly p2pdmaCache?: P2pdmaMapCache;
}

export interface Chosen {
  readonly type: string;
  readonly exporterIndex: number;
  readonly importerIndex: number;
  readonly exporter: Offer;
  readonly importer: Offer;
  readonly data: MatchData;
  /** Where the exporter must keep the buffer for this attachment. */
  readonly placement: 'device' | 'system';
  /** Nothing peer-to-peer matched: data goes through system memory. */
  readonly bounce: boolean;
  readonly quality: Quality | undefined;
  readonly policy: NegotiationPolicy;
}

export interface TraceStep {
  readonly exporterIndex: number;
  readonly importerIndex: number;
  readonly type: string;
  readonly outcome: 'match' | 'skip' | 'error' | 'chosen';
  readonly code?: ErrnoName;
  readonly reason?: string;
  readonly quality?: Quality;
}

export type NegotiationResult =
  | { readonly ok: true; readonly chosen: Chosen; readonly trace: readonly TraceStep[] }
  | { readonly ok: false; readonly error: EmuError; readonly trace: readonly TraceStep[] };

function checkOffers(side: string, offers: readonly Offer[], types: ReadonlyMap<string, MappingType>) {
  if (!Array.isArray(offers)) throw err('EINVAL', `negotiate: ${side} offers must be an array`);
  offers.forEach((o, i) => {
    if (!o || typeof o !== 'object' || typeof o.type !== 'string')
      throw err('EINVAL', `negotiate: ${side}[${i}].type must be a string`);
    if (!types.has(o.type))
      throw err('EINVAL', `negotiate: ${side}[${i}].type "${o.type}" is not a registered mapping type`);
  });
}

/** The pairs in the order the policy visits them. */
function* pairs(policy: NegotiationPolicy, ne: number, ni: number): Generator<[number, number]> {
  if (policy === 'importer-order') {
    for (let i = 0; i < ni; i++) for (let e = 0; e < ne; e++) yield [e, i];
  } else {
    for (let e = 0; e < ne; e++) for (let i = 0; i < ni; i++) yield [e, i];
  }
}

/** Match an exporter list against an importer list. */
export function negotiate(
  exporter: readonly Offer[],
  importer: readonly Offer[],
  ctx: NegotiationContext = {},
): NegotiationResult {
  const policy = ctx.policy ?? 'exporter-order';
  if (!Object.values(NegotiationPolicy).includes(policy))
    throw err('EINVAL', `negotiate: unknown policy "${policy}"`);
  const types = ctx.types ?? BUILTIN_TYPES;
  checkOffers('exporter', exporter, types);
  checkOffers('importer', importer, types);
  const cache = ctx.p2pdmaCache ?? new P2pdmaMapCache();
  const mctx: MatchContext = {
    topology: ctx.topology,
    p2pdma(provider, client) {
      if (!ctx.topology) throw err('EINVAL', 'negotiate: a P2P offer needs context.topology');
      return cache.get(ctx.topology, provider, client);
    },
  };
  const quality: QualityFn = ctx.quality ?? defaultQuality(ctx.topology, ctx.referenceBytes ?? 2 ** 20);
  const trace: TraceStep[] = [];
  if (exporter.length === 0 || importer.length === 0) {
    const side = exporter.length === 0 ? 'exporter' : 'importer';
    return { ok: false, error: err('EINVAL', `negotiate: empty ${side} list`), trace };
  }

  const candidates: { e: number; i: number; data: MatchData; q: Quality | undefined; order: number }[] = [];
  for (const [e, i] of pairs(policy, exporter.length, importer.length)) {
    const exp = exporter[e];
    const imp = importer[i];
    if (exp.type !== imp.type) continue;
    const t = types.get(exp.type)!;
    const out: MatchOutcome = t.match ? t.match(exp, imp, mctx) : { ok: true };
    if (!out.ok) {
      if (out.code === 'EOPNOTSUPP') {
        trace.push({
          exporterIndex: e,
          importerIndex: i,
          type: exp.type,
          outcome: 'skip',
          code: out.code,
          reason: out.reason,
        });
        continue;
      }
      trace.push({
        exporterIndex: e,
        importerIndex: i,
        type: exp.type,
        outcome: 'error',
        code: out.code,
        reason: out.reason,
      });
      return { ok: false, error: err(out.code, `negotiate: ${exp.type} match failed: ${out.reason}`), trace };
    }
    const data = out.data ?? {};
    const q = policy === 'best-quality' ? quality(exp, imp, data, mctx) : undefined;
    trace.push({
      exporterIndex: e,
      importerIndex: i,
      type: exp.type,
      outcome: 'match',
      ...(q ? { quality: q } : {}),
    });
    candidates.push({ e, i, data, q, order: candidates.length });
    if (policy !== 'best-quality') break;
  }
  if (candidates.length === 0) {
    return {
      ok: false,
      error: err('EINVAL', 'negotiate: no compatible interconnect between exporter and importer'),
      trace,
    };
  }

  const score = (q: Quality | undefined) => q?.modelledNs ?? Infinity;
  const win = [...candidates].sort(
    (a, b) => score(a.q) - score(b.q) || (a.q?.hops ?? 0) - (b.q?.hops ?? 0) || a.order - b.order,
  )[0];
  const exp = exporter[win.e];
  const imp = importer[win.i];
  const t = types.get(exp.type)!;
  const data = t.finish ? t.finish(exp, imp, win.data, mctx) : win.data;
  const system = t.systemPlacement?.(exp, imp, data) ?? false;
  trace.push({
    exporterIndex: win.e,
    importerIndex: win.i,
    type: exp.type,
    outcome: 'chosen',
    ...(win.q ? { quality: win.q } : {}),
  });
  const chosen: Chosen = {
    type: exp.type,
    exporterIndex: win.e,
    importerIndex: win.i,
    exporter: exp,
    importer: imp,
    data,
    placement: system ? 'system' : 'device',
    bounce: system,
    quality: win.q,
    policy,
  };
  return { ok: true, chosen, trace };
}

const offerName = (o: Offer) => o.label ?? o.type;

/** One line for the attachment's trace record. */
export function describeChosen(c: Chosen): string {
  const where = c.bounce ? 'system-memory bounce' : 'peer-to-peer';
  const dev = c.data.dmaDevice ? ` for ${String(c.data.dmaDevice)}` : '';
  const map = c.data.mapType ? ` ${String(c.data.mapType)}` : '';
  const q = c.quality ? `, modelled ${(c.quality.modelledNs / 1e3).toFixed(1)} us` : '';
  return `${c.type}${dev} (${where}${map}) exporter#${c.exporterIndex} ${offerName(c.exporter)} x importer#${c.importerIndex} ${offerName(c.importer)}, ${c.policy}${q}`;
}

/** The trace as lines, for logs and test failure messages. */
export function formatNegotiationTrace(trace: readonly TraceStep[]): string[] {
  return trace.map((s) => {
    const q = s.quality
      ? ` quality ${(s.quality.modelledNs / 1e3).toFixed(2)} us, ${s.quality.hops} hops`
      : '';
    const why = s.code ? ` ${s.code}: ${s.reason}` : '';
    return `exporter#${s.exporterIndex} x importer#${s.importerIndex} ${s.type}: ${s.outcome}${why}${q}`;
  });
}
