// The policy on the server: checking a candidate (it must parse, name only
// what exists, and pass its own tests against the nodes there are now)
// before it replaces the one in force, which stays in force otherwise.
import { DEFAULT_POLICY_TEXT, parsePolicy, PolicyError, runPolicyTests, type Policy, type PolicyNode } from '../policy/index.js';
import { ApiError } from './http.js';

export { DEFAULT_POLICY_TEXT };

export interface CheckedPolicy {
  policy: Policy;
  tests: number;
}

/** The parsed policy, or an ApiError (400) whose message is "LINE:COL: PATH: REASON" when it has a place. */
export function checkPolicy(text: string, nodes: PolicyNode[]): CheckedPolicy {
  let policy: Policy;
  try {
    policy = parsePolicy(text);
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    const where = err.line !== undefined ? `${err.line}:${err.column ?? 1}: ` : '';
    const path = err.path ? `${err.path}: ` : '';
    throw new ApiError(400, `policy-${err.code}`, `${where}${path}${err.reason}`, { line: err.line, column: err.column, path: err.path });
  }
  const failures = runPolicyTests(policy, nodes);
  if (failures.length) {
    throw new ApiError(400, 'policy-tests-failed', `${failures.length} policy test${failures.length === 1 ? '' : 's'} failed: ${failures.join('; ')}`, { failures });
  }
  return { policy, tests: policy.tests.length };
}
