// The policy language: parse, compile per node, auto-approve routes, check
// tag ownership, run a policy's own tests.

export { parsePolicy, PolicyError } from './policy.js';
export type { PolicyErrorCode, PolicyErrorDetails } from './errors.js';
export { compilePolicy } from './compile.js';
export { autoApproves, mayUseTag } from './approve.js';
export { runPolicyTests } from './tests.js';
export { parseJsonc, type JsonNode } from './jsonc.js';
export { DEFAULT_PROTOS } from './ports.js';
export type {
  CompiledNode,
  FilterRule,
  Policy,
  PolicyAcl,
  PolicyAlias,
  PolicyDst,
  PolicyNode,
  PolicyRouteApprover,
  PolicyTest,
  PolicyTestDst,
  PortRange,
} from './types.js';

/**
 * What a server without a policy uses: every node may reach every node (and
 * every subnet they route) on every port. Setting a policy replaces it.
 */
export const DEFAULT_POLICY_TEXT = `// The default policy: what a server without a policy of its own uses.
// Every node may reach every node, and the subnets they route, on every port.
{
  "acls": [
    { "action": "accept", "src": ["*"], "dst": ["*:*"] },
  ],
}
`;
