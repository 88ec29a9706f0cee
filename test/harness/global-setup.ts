/** Starts one Sentinel topology for the whole integration tier and hands its addresses to tests. */
import type { TestProject } from 'vitest/node';
import { startTopology } from './topology.js';

export interface ProvidedRedis {
  sentinels: { host: string; port: number }[];
  masterName: string;
  masterPort: number;
}

declare module 'vitest' {
  export interface ProvidedContext {
    redis: ProvidedRedis;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const topology = await startTopology();
  project.provide('redis', {
    sentinels: topology.sentinels,
    masterName: topology.masterName,
    masterPort: topology.master.port,
  });
  return () => topology.stop();
}
