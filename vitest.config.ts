import { defineConfig } from 'vitest/config';

/**
 * Three tiers, run in this order by `npm test`:
 *  - unit: pure code, no Redis;
 *  - integration: routes, scripts and security against a real Sentinel topology started once by
 *    the global setup (each test uses its own random tenant, so files run in parallel, three at
 *    a time);
 *  - sentinel: failover and outage scenarios, each file with its own topology, two files at a time.
 */
export default defineConfig({
  test: {
    // Vitest's default on 2 cores is one worker, and the integration files mostly wait on Redis
    // and timers: three at once halve the unit and integration tiers' time (76 s to 35-43 s here,
    // also with the other core busy). The sentinel tier runs two at a time (below).
    maxWorkers: 3,
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'integration',
          include: [
            'test/integration/**/*.test.ts',
            'test/security/**/*.test.ts',
            'test/contract/**/*.test.ts',
          ],
          globalSetup: ['test/harness/global-setup.ts'],
          testTimeout: 20_000,
          hookTimeout: 40_000,
        },
      },
      {
        test: {
          name: 'sentinel',
          include: ['test/sentinel/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 60_000,
          // Two files at a time: each has its own topology on its own ports (the partition test's
          // island its own addresses), and they mostly wait on sentinels and timers (0.8 cores on
          // average one at a time). One at a time took 190 s of a 10-minute suite, twice (Node 20
          // and 24); two at a time the longest file (failover, about 100 s) sets the pace.
          maxWorkers: 2,
          // After the other projects when every project runs in one command (vitest refuses
          // projects of one group with different worker counts).
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
