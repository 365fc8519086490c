/**
 * Whole-file rules for what connects devices outside the PCIe tree: private GPU links inside a
 * host, and the fabric's switches and cables between hosts. Same reporting as build.ts.
 */
import type { BuildContext } from './build.ts';
import type { PathSegment } from './errors.ts';
import type { CableEnd, Device, FabricLink, FabricSwitch, Host, PrivateLink, Topology } from './model.ts';
import type { HostSpec, TopologyFile } from './schema.ts';
import { PORT_REF_RE } from './schema.ts';

export function buildPrivateLinks(
  h: HostSpec,
  at: PathSegment[],
  devices: Map<string, Device>,
  { fail }: BuildContext,
): PrivateLink[] {
  const ids = new Set<string>();
  const groupOf = new Map<string, string>();
  return h.privateLinks.map((l, i) => {
    if (ids.has(l.id))
      fail(
        [...at, 'privateLinks', i, 'id'],
        `expected a private link id unique in host ${h.id}`,
        `"${l.id}" again`,
      );
    ids.add(l.id);
    l.members.forEach((m, j) => {
      const d = devices.get(m);
      if (!d)
        fail(
          [...at, 'privateLinks', i, 'members', j],
          `expected a GPU id of host ${h.id}`,
          `"${m}" (no such device)`,
        );
      if (d!.kind !== 'gpu')
        fail([...at, 'privateLinks', i, 'members', j], 'expected a GPU', `${d!.kind} "${m}"`);
      const g = groupOf.get(m);
      if (g)
        fail(
          [...at, 'privateLinks', i, 'members', j],
          'expected each GPU in at most one private link group',
          `"${m}" (also in ${g})`,
        );
      groupOf.set(m, l.id);
    });
    return {
      key: `${h.id}/${l.id}`,
      id: l.id,
      host: h.id,
      kind: l.kind,
      members: l.members,
      links: l.links,
      linkRate: l.linkRate,
      latencyNs: l.latency,
    };
  });
}

export function buildFabric(
  spec: TopologyFile,
  hosts: Map<string, Host>,
  { fail }: BuildContext,
): Topology['fabric'] {
  const switches = new Map<string, FabricSwitch>();
  spec.fabric.switches.forEach((s, i) => {
    if (switches.has(s.id))
      fail(
        ['fabric', 'switches', i, 'id'],
        'expected a fabric switch id unique in the file',
        `"${s.id}" again`,
      );
    switches.set(s.id, { id: s.id, tier: s.tier, latencyNs: s.latency });
  });
  const cabled = new Map<string, number>();
  const links: FabricLink[] = spec.fabric.links.map((l, i) => {
    const end = (side: 'a' | 'b'): CableEnd => {
      const ref = l[side];
      const path: PathSegment[] = ['fabric', 'links', i, side];
      const m = PORT_REF_RE.exec(ref);
      if (!m) {
        if (!switches.has(ref))
          fail(path, 'expected a fabric switch id or host/nic:port', `"${ref}" (no such switch)`);
        return { kind: 'switch', id: ref };
      }
      const [, hostId, devId, portStr] = m;
      const host = hosts.get(hostId);
      if (!host) fail(path, 'expected a host id before "/"', `"${hostId}" (no such host)`);
      const dev = host!.devices.get(devId);
      if (!dev) fail(path, `expected a NIC id of host ${hostId}`, `"${devId}" (no such device)`);
      if (dev!.kind !== 'nic')
        fail(path, 'expected a NIC (only NIC ports take cables)', `${dev!.kind} "${devId}"`);
      const port = Number(portStr);
      if (dev!.kind === 'nic' && !dev!.ports.some((p) => p.port === port)) {
        fail(
          path,
          `expected a port of ${hostId}/${devId} (${dev!.ports.map((p) => p.port).join(', ')})`,
          `port ${port}`,
        );
      }
      const prev = cabled.get(ref);
      if (prev !== undefined)
        fail(path, 'expected each NIC port on one cable', `${ref} (already on fabric.links[${prev}])`);
      cabled.set(ref, i);
      return { kind: 'port', host: hostId, device: devId, port };
    };
    const a = end('a');
    const b = end('b');
    if (l.a === l.b)
      fail(
        ['fabric', 'links', i, 'b'],
        'expected a cable between two different ends',
        `"${l.b}" on both ends`,
      );
    return { id: `L${i}`, a, b, rate: l.rate, latencyNs: l.latency };
  });
  return { switches, links };
}
