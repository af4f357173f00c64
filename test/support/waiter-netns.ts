// A stand-in for a mesh pod's sandbox for the init-waiter tests: a "pod" netns with
// 192.0.2.1/24 and 2001:db8::1/64 on a veth whose other end is in a "network" netns
// holding 192.0.2.2 and 2001:db8::2 (the waiter's default probe addresses), with default
// routes through it. Nothing listens in the network netns, so a probe that escapes
// capture is refused there, never sent anywhere real. The host netns is not touched.
import { statSync } from 'node:fs';
import { connectNetns, createNetns, deleteNetns, must } from './netns.ts';
import type { TestNetns } from './netns.ts';

export interface PodSandbox {
  pod: TestNetns;
  network: TestNetns;
  /** The pod netns's inode: what a correct mark names in `netns`. */
  inode: number;
  destroy(): void;
}

export function createPodSandbox(options: { ipv6?: boolean } = {}): PodSandbox {
  const ipv6 = options.ipv6 ?? true;
  const pod = createNetns('pncwp');
  let network: TestNetns | undefined;
  try {
    network = createNetns('pncwn');
    const [podLink] = connectNetns(
      { netns: pod, addresses: ['192.0.2.1/24', ...(ipv6 ? ['2001:db8::1/64'] : [])] },
      { netns: network, addresses: ['192.0.2.2/24', ...(ipv6 ? ['2001:db8::2/64'] : [])] },
    );
    must(['ip', '-n', pod.name, 'route', 'add', 'default', 'via', '192.0.2.2', 'dev', podLink]);
    if (ipv6) must(['ip', '-n', pod.name, '-6', 'route', 'add', 'default', 'via', '2001:db8::2', 'dev', podLink]);
  } catch (error) {
    deleteNetns(network);
    deleteNetns(pod);
    throw error;
  }
  const networkNetns = network;
  return {
    pod,
    network: networkNetns,
    inode: statSync(pod.path).ino,
    destroy() {
      deleteNetns(pod);
      deleteNetns(networkNetns);
    },
  };
}
