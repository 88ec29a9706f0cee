/** A benchmark scenario: one fixed request hammered by autocannon for the run's duration. */
export interface ScenarioContext {
  /** Authorization header of a key holding every scope the scenarios need. */
  auth: { authorization: string };
}

export interface Scenario {
  /** Table label. */
  name: string;
  id: string;
  target: 'gateway' | 'baseline';
  /** Id of the baseline scenario this one is compared with (ratio column). */
  baseline?: string;
  request(ctx: ScenarioContext): {
    method: 'GET' | 'PUT' | 'POST' | 'DELETE';
    path: string;
    headers?: Record<string, string>;
    body?: string;
  };
}
