/**
 * Worker entry of the vfio-dev device: started by the kernel's vfio-pci probe (spawnWorker with
 * a DeviceInit as workerData, BAR region ids in params). Runs the device loop until the kernel
 * stops it; returning lets the worker exit 0.
 */
import { workerData } from 'node:worker_threads';
import type { DeviceInit } from '../../fabric/device-queue-layout.ts';
import { runDevice } from '../device-runtime.ts';
import { VfioDevModel } from './vfio-dev.ts';

const init = workerData as DeviceInit;
runDevice(new VfioDevModel(init), init);
