/**
 * Worker entry of the mlx5-style HCA: started by the kernel's mlx5 driver (spawnWorker with a
 * DeviceInit as workerData). Runs the HCA loop until the driver stops it; returning lets the
 * worker exit 0.
 */
import { workerData } from 'node:worker_threads';
import type { DeviceInit } from '../../fabric/device-queue-layout.ts';
import { DeviceRuntime } from '../device-runtime.ts';
import { Mlx5Hca } from './mlx5-hca.ts';

new Mlx5Hca(new DeviceRuntime(workerData as DeviceInit)).run();
