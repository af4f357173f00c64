// dist/controller.js: the node agent (`run`) and the operator's redirect tools.
import { parseArgs } from 'node:util';
import { prepareUninstallCommand, prepareUninstallHelp } from './commands/prepare-uninstall.ts';
import { redirectCommands, redirectHelp } from './commands/redirect.ts';
import { runCommand, runHelp } from './commands/run.ts';

const HELP = `pod-network-controller: sidecar traffic redirection programmed from the node.

Usage: node dist/controller.js <command> [flags]

${redirectHelp}
${runHelp}
${prepareUninstallHelp}
Exit codes:
  0  success (verify: rules are in place)
  1  failure while acting (iptables, netns, API)
  2  bad usage or bad input (unknown flag, unreadable pod file, invalid annotation)
  3  verify: the rules in the netns differ from the plan (a diff is printed)
`;

// The first argument is the command (or --help); the rest are the command's own flags.
const [command, ...args] = process.argv.slice(2);
const [first] = parseArgs({
  args: process.argv.slice(2, 3),
  options: { help: { type: 'boolean', short: 'h' } },
  strict: false,
  allowPositionals: true,
  tokens: true,
}).tokens;
if (first === undefined || (first.kind === 'option' && first.name === 'help' && first.value === undefined) || command === 'help') {
  process.stdout.write(HELP);
  process.exit(first === undefined ? 2 : 0);
}
const handler = command === 'run' ? runCommand : command === 'prepare-uninstall' ? prepareUninstallCommand : redirectCommands[command!];
if (!handler) {
  process.stderr.write(`unknown command ${JSON.stringify(command)}\n\n${HELP}`);
  process.exit(2);
}
process.exitCode = await handler(args);
