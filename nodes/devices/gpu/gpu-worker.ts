/**
 * Worker entry of the GPU: started by the kernel's GPU driver (nodes/kernel/gpu/gpu.ts, through
 * deviceHostSpawn with a DeviceInit as workerData). Runs the device loop until the kernel stops
 * it; returning lets the worker exit 0.
 */
import { workerData } from 'node:worker_threads';
import type { DeviceInit } from '../../fabric/device-queue-layout.ts';
import { runDevice } from '../device-runtime.ts';
import { GpuModel } from './gpu.ts';

runDevice(new GpuModel(), workerData as DeviceInit);
