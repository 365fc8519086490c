import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withDeadline } from '../common/deadline.ts';
import { findNatsServer, launchNatsServer, type NatsServerHandle } from './launcher.ts';

// Broker tests run against a real nats-server. Without one they skip with a reason, except under
// CI=true, where a missing broker must fail the run (the install step is part of what CI checks).
const bin = findNatsServer();
const ci = process.env.CI === 'true';
if (!bin && !ci)
  console.warn('broker tests skipped: nats-server not installed (apt-get install nats-server)');

describe.skipIf(!bin && !ci)('broker launcher', () => {
  let server: NatsServerHandle;

  beforeAll(async () => {
    if (!bin)
      throw new Error('CI=true but nats-server is not installed: the quick-start install step failed');
    server = await launchNatsServer();
  });

  afterAll(async () => {
    await server?.close();
  });

  it('broker - the launcher starts nats-server on a free loopback port and a client round-trips a message', async () => {
    expect(server.url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    const nc = await withDeadline(connect({ servers: server.url, timeout: 5_000 }), 10_000, 'connect');
    try {
      const sub = nc.subscribe('p2pemu.test.echo', { max: 1 });
      const got = (async () => {
        for await (const m of sub) return m.string();
        return null;
      })();
      nc.publish('p2pemu.test.echo', 'hello');
      expect(await withDeadline(got, 5_000, 'echo')).toBe('hello');
    } finally {
      await nc.close();
    }
  });

  it('broker - close() stops the server and is idempotent; two launches get different ports', async () => {
    const other = await launchNatsServer();
    expect(other.port).not.toBe(server.port);
    await withDeadline(Promise.all([other.close(), other.close()]), 10_000, 'close');
    expect(() => process.kill(other.pid, 0)).toThrow();
  });
});
