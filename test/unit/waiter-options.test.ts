import { describe, expect, it } from 'vitest';
import { HelpRequested, parseOptions, UsageError } from '../../init-waiter/src/options.ts';

describe('init-waiter options', () => {
  it('has defaults that match the injected pod spec', () => {
    expect(parseOptions([], {})).toEqual({
      annotationsFile: '/etc/podinfo/annotations',
      timeoutMs: 300_000,
      errorGraceMs: 15_000,
      validate: true,
      proxyPort: 15001,
      probeAddresses: { ipv4: '192.0.2.2', ipv6: '2001:db8::2' },
      probePort: 9,
      terminationMessagePath: '/dev/termination-log',
      restartPolicy: 'Always',
    });
  });

  it('with restartPolicy Never has no default timeout or error grace (an exit fails the pod), but keeps those given', () => {
    const never = parseOptions([], { PNC_WAITER_RESTART_POLICY: 'Never' });
    expect(never).toMatchObject({ restartPolicy: 'Never', timeoutMs: undefined, errorGraceMs: undefined });
    expect(parseOptions(['--restart-policy=Never', '--timeout', '600'], { PNC_WAITER_ERROR_GRACE: '0' })).toMatchObject({
      restartPolicy: 'Never',
      timeoutMs: 600_000,
      errorGraceMs: 0,
    });
    // OnFailure restarts a failed init container as Always does.
    expect(parseOptions([], { PNC_WAITER_RESTART_POLICY: 'OnFailure' })).toMatchObject({
      restartPolicy: 'OnFailure',
      timeoutMs: 300_000,
      errorGraceMs: 15_000,
    });
    // An empty value (a pod spec rendered without defaults) counts as unset: Always.
    expect(parseOptions([], { PNC_WAITER_RESTART_POLICY: '' }).restartPolicy).toBe('Always');
    expect(() => parseOptions([], { PNC_WAITER_RESTART_POLICY: 'never' })).toThrow(
      new UsageError('PNC_WAITER_RESTART_POLICY: "never" is not a restart policy (Always, OnFailure, Never)'),
    );
  });

  it('takes an error grace of 0 (give up on the first error mark) and decimals, from flag or env', () => {
    expect(parseOptions(['--error-grace', '0'], {}).errorGraceMs).toBe(0);
    expect(parseOptions([], { PNC_WAITER_ERROR_GRACE: '2.5' }).errorGraceMs).toBe(2_500);
    expect(parseOptions(['--termination-message-path=/tmp/t'], { PNC_WAITER_TERMINATION_MESSAGE_PATH: '/env/t' }).terminationMessagePath).toBe('/tmp/t');
  });

  it('takes flags (both --flag value and --flag=value) over env over defaults', () => {
    const env = { PNC_WAITER_TIMEOUT: '10', PNC_WAITER_VALIDATE: 'false', PNC_WAITER_PROXY_PORT: '15002', PNC_WAITER_ANNOTATIONS_FILE: '/env/a' };
    const options = parseOptions(['--timeout', '2.5', '--proxy-port=15011'], env);
    expect(options.timeoutMs).toBe(2_500);
    expect(options.proxyPort).toBe(15011);
    expect(options.validate).toBe(false);
    expect(options.annotationsFile).toBe('/env/a');
  });

  it('ignores empty env values (a ConfigMap key left blank)', () => {
    expect(parseOptions([], { PNC_WAITER_TIMEOUT: '' }).timeoutMs).toBe(300_000);
  });

  it('overrides one probe family and keeps the other default', () => {
    expect(parseOptions(['--probe-address', '198.51.100.7'], {}).probeAddresses).toEqual({ ipv4: '198.51.100.7', ipv6: '2001:db8::2' });
    expect(parseOptions([], { PNC_WAITER_PROBE_ADDRESS: '2001:db8::9, 203.0.113.9' }).probeAddresses).toEqual({
      ipv4: '203.0.113.9',
      ipv6: '2001:db8::9',
    });
  });

  it.each([
    [['--timeout', '0'], '--timeout: "0" is not a number of seconds'],
    [['--timeout', '-1'], '--timeout: "-1"'],
    [['--timeout', '1e3'], '--timeout: "1e3"'],
    [['--timeout', '86401'], '(0, 86400]'],
    [['--error-grace', '-1'], '--error-grace: "-1" is not a number of seconds in [0, 86400]'],
    [['--error-grace', '86401'], '[0, 86400]'],
    [['--termination-message-path', ''], 'empty path'],
    [['--validate', 'yes'], '--validate: "yes" is neither true nor false'],
    [['--proxy-port', '0'], '--proxy-port: "0" is not a port'],
    [['--proxy-port', '65536'], 'is not a port'],
    [['--probe-port', 'http'], '--probe-port: "http" is not a port'],
    [['--probe-address', 'example.com'], '"example.com" is not an IP address'],
    [['--probe-address', '192.0.2.1,192.0.2.3'], 'more than one ipv4 address'],
    [['--probe-address', '127.0.0.5'], 'loopback address, which is never captured'],
    [['--annotations-file', ' '], 'empty path'],
    [['--timeout'], '--timeout needs a value'],
    [['--verbose'], 'unknown argument "--verbose"'],
    [['positional'], 'unknown argument "positional"'],
  ])('rejects %j', (argv, message) => {
    expect(() => parseOptions(argv, {})).toThrow(UsageError);
    expect(() => parseOptions(argv, {})).toThrow(message);
  });

  it.each([
    [['--verbose=1'], 'unknown argument "--verbose=1"'],
    [['-x'], 'unknown argument "-x"'],
    [['-hq'], 'unknown argument "-hq"'],
    [['--help=yes'], 'unknown argument "--help=yes"'],
    [['--timeout', '5', '--', '--validate'], 'unknown argument "--"'],
    [['--validate=false', 'extra'], 'unknown argument "extra"'],
  ])('quotes the argument as given when it is no flag: %j', (argv, message) => {
    expect(() => parseOptions(argv, {})).toThrow(UsageError);
    expect(() => parseOptions(argv, {})).toThrow(message);
  });

  it('takes the next argument as the value even when it starts with a dash, and the last repeat wins', () => {
    expect(() => parseOptions(['--annotations-file', '--timeout'], {})).not.toThrow();
    expect(parseOptions(['--annotations-file', '--timeout'], {}).annotationsFile).toBe('--timeout');
    expect(parseOptions(['--timeout', '1', '--timeout=2'], {}).timeoutMs).toBe(2_000);
    expect(() => parseOptions(['--timeout='], { PNC_WAITER_TIMEOUT: '7' })).toThrow('--timeout: "" is not a number of seconds');
  });

  it('answers -h like --help, wherever it stands', () => {
    expect(() => parseOptions(['--timeout', '5', '-h'], {})).toThrow(HelpRequested);
  });

  it('names the env variable when the bad value came from it', () => {
    expect(() => parseOptions([], { PNC_WAITER_VALIDATE: 'maybe' })).toThrow('PNC_WAITER_VALIDATE: "maybe" is neither true nor false');
  });

  it('answers --help with the usage listing every flag and variable', () => {
    let help: unknown;
    try {
      parseOptions(['--help'], {});
    } catch (error) {
      help = error;
    }
    expect(help).toBeInstanceOf(HelpRequested);
    for (const name of [
      '--annotations-file',
      'PNC_WAITER_TIMEOUT',
      '--validate',
      '--proxy-port',
      '--probe-address',
      'PNC_WAITER_PROBE_PORT',
      '--error-grace',
      'PNC_WAITER_TERMINATION_MESSAGE_PATH',
    ]) {
      expect((help as Error).message).toContain(name);
    }
  });
});
