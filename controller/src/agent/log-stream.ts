// Where the agent's log lines go: stdout, written asynchronously, with a bounded queue.
import { pino } from 'pino';

/**
 * Lines wait in memory while stdout cannot take them (the container runtime's log pipe not
 * being read); past this many bytes newer lines are dropped (and counted) instead of growing
 * the agent's memory without bound. Written synchronously, a stalled pipe would stall the agent.
 */
export const LOG_QUEUE_BYTES = 1024 * 1024;

export interface LogStream {
  stream: pino.DestinationStream;
  /** Calls the listener once per dropped line. */
  onDrop(listener: () => void): void;
}

export function boundedLogStream(fd = 1, maxBytes = LOG_QUEUE_BYTES): LogStream {
  const stream = pino.destination({ dest: fd, sync: false, minLength: 0, maxLength: maxBytes });
  return { stream, onDrop: (listener) => stream.on('drop', listener) };
}
