/**
 * Worker entry of the edu device: started by the kernel's edu driver (spawnWorker with a
 * DeviceInit as workerData). Runs the device loop until the kernel stops it; returning lets
 * the worker exit 0.
 */
import { workerData } from 'node:worker_threads';
import type { DeviceInit } from '../../fabric/device-queue-layout.ts';
import { runDevice } from '../device-runtime.ts';
import { EduModel } from './edu.ts';

runDevice(new EduModel(), workerData as DeviceInit);
