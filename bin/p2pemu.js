#!/usr/bin/env node
// The p2pemu binary. Runs the TypeScript sources through tsx (registered here, in this thread;
// device workers register it themselves, see common/worker.ts).
import { register } from 'tsx/esm/api';

register();
await import('./cli.ts');
