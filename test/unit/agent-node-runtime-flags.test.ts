// The Node flags the agent re-executes itself with, and how an operator overrides them: pure.
import { describe, expect, it } from 'vitest';
import { AGENT_NODE_FLAGS, missingAgentNodeFlags } from '../../controller/src/agent/node-runtime-flags.ts';

describe('missingAgentNodeFlags', () => {
  it('adds every flag of the agent when the operator set none', () => {
    expect(missingAgentNodeFlags([], '')).toEqual(['--max-semi-space-size=1', '--jitless', '--max-old-space-size=256']);
    expect(missingAgentNodeFlags(['--enable-source-maps'], '--stack-trace-limit=50')).toEqual(AGENT_NODE_FLAGS.map((flag) => flag.arg));
  });

  it('adds nothing once the re-executed agent runs with them', () => {
    expect(missingAgentNodeFlags(['--max-semi-space-size=1', '--jitless', '--max-old-space-size=256'], '')).toEqual([]);
  });

  it("keeps the operator's choice, either way, from NODE_OPTIONS or node's own arguments", () => {
    expect(missingAgentNodeFlags([], '--no-jitless')).toEqual(['--max-semi-space-size=1', '--max-old-space-size=256']);
    expect(missingAgentNodeFlags(['--no-jitless'], '--max-old-space-size=512')).toEqual(['--max-semi-space-size=1']);
    expect(missingAgentNodeFlags([], '  --max-semi-space-size=8   --jitless --max-old-space-size=64 ')).toEqual([]);
    expect(missingAgentNodeFlags(['--max_semi_space_size=4'], '')).toEqual(['--jitless', '--max-old-space-size=256']);
  });

  it('does not take a value or a flag that merely contains the name for the flag', () => {
    expect(missingAgentNodeFlags([], '--require=/opt/jitless.js')).toEqual(AGENT_NODE_FLAGS.map((flag) => flag.arg));
    expect(missingAgentNodeFlags(['--max-semi-space-size-extra=2'], '')).toEqual(AGENT_NODE_FLAGS.map((flag) => flag.arg));
  });
});
