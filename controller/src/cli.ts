// dist/controller.js: the node agent (`run`) and the operator's redirect tools.
import { redirectCommands, redirectHelp } from './commands/redirect.ts';
import { runCommand, runHelp } from './commands/run.ts';

const HELP = `pod-network-controller: sidecar traffic redirection programmed from the node.

Usage: node dist/controller.js <command> [flags]

${redirectHelp}
${runHelp}
Exit codes:
  0  success (verify: rules are in place)
  1  failure while acting (iptables, netns, API)
  2  bad usage or bad input (unknown flag, unreadable pod file, invalid annotation)
  3  verify: the rules in the netns differ from the plan (a diff is printed)
`;

const [command, ...args] = process.argv.slice(2);
if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
  process.stdout.write(HELP);
  process.exit(command === undefined ? 2 : 0);
}
const handler = command === 'run' ? runCommand : redirectCommands[command];
if (!handler) {
  process.stderr.write(`unknown command ${JSON.stringify(command)}\n\n${HELP}`);
  process.exit(2);
}
process.exitCode = await handler(args);
