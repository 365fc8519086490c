/**
 * Per-hop defaults of the timing model and their overrides: a topology's `timing:` section, then
 * the caller's. Every value has a row in docs/timing-model.md section 5.
 */
import type { Topology } from './model.ts';

/** Per-hop defaults; a topology's `timing:` section and per-node `latency` fields override them. */
export interface TimingParams {
  readonly pcieLinkLatencyNs: number;
  readonly switchLatencyNs: number;
  readonly rootComplexLatencyNs: number;
  readonly hostBridgeMeshLatencyNs: number;
  readonly memoryLatencyNs: number;
  readonly nicLatencyNs: number;
  readonly fabricSwitchLatencyNs: number;
  readonly privateLinkLatencyNs: number;
  readonly smpBandwidth: number;
  readonly smpLatencyNs: number;
  readonly memoryBandwidth: number;
}

export const DEFAULT_TIMING: TimingParams = {
  pcieLinkLatencyNs: 20,
  switchLatencyNs: 110,
  rootComplexLatencyNs: 250,
  hostBridgeMeshLatencyNs: 60,
  memoryLatencyNs: 90,
  nicLatencyNs: 300,
  fabricSwitchLatencyNs: 300,
  privateLinkLatencyNs: 300,
  smpBandwidth: 62.4e9,
  smpLatencyNs: 140,
  memoryBandwidth: 200e9,
};

export function timingParams(topo: Topology, extra: Partial<TimingParams> = {}): TimingParams {
  const t = topo.timing;
  const pick = <K extends keyof TimingParams>(k: K, v: number | undefined) =>
    extra[k] ?? v ?? DEFAULT_TIMING[k];
  return {
    pcieLinkLatencyNs: pick('pcieLinkLatencyNs', t.pcieLinkLatency),
    switchLatencyNs: pick('switchLatencyNs', t.switchLatency),
    rootComplexLatencyNs: pick('rootComplexLatencyNs', t.rootComplexLatency),
    hostBridgeMeshLatencyNs: pick('hostBridgeMeshLatencyNs', t.hostBridgeMeshLatency),
    memoryLatencyNs: pick('memoryLatencyNs', t.memoryLatency),
    nicLatencyNs: pick('nicLatencyNs', t.nicLatency),
    fabricSwitchLatencyNs: pick('fabricSwitchLatencyNs', t.fabricSwitchLatency),
    privateLinkLatencyNs: pick('privateLinkLatencyNs', t.privateLinkLatency),
    smpBandwidth: pick('smpBandwidth', t.smpBandwidth),
    smpLatencyNs: pick('smpLatencyNs', t.smpLatency),
    memoryBandwidth: pick('memoryBandwidth', t.memoryBandwidth),
  };
}
