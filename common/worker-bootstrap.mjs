// Worker entry used when the real entry is TypeScript (see worker.ts). Registers tsx's ESM hooks
// in this thread, then imports the real entry. Plain JS on purpose: it must load without a loader.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.__p2pemuEntry);
