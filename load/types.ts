/** A benchmark scenario: one request (varied by setupRequest) hammered by autocannon. */
import type { Request } from 'autocannon';

export interface ScenarioContext {
  /** Authorization header of a key holding every scope the scenarios need. */
  auth: { authorization: string };
  /** Ids of live sessions made before the run. */
  sessions: string[];
}

export interface Scenario {
  /** Table label. */
  name: string;
  id: string;
  target: 'gateway' | 'baseline' | 'baseline-ratelimit' | 'baseline-state';
  /** Id of the baseline scenario this one is compared with (ratio column). */
  baseline?: string;
  request(ctx: ScenarioContext): {
    method: 'GET' | 'PUT' | 'POST' | 'DELETE';
    path: string;
    headers?: Record<string, string>;
    body?: string;
    /** Called by autocannon before each request (vary the identifier, the client address...). */
    setupRequest?: (req: Request) => Request;
  };
}
