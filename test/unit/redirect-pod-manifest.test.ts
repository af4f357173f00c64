// Reading a Pod from YAML or JSON text for the CLI.
import { describe, expect, it } from 'vitest';
import { parsePodManifest, PodManifestError } from '../../controller/src/pod-manifest.ts';

describe('parsePodManifest', () => {
  it('reads YAML and JSON alike', () => {
    const yaml = 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  namespace: b\n  annotations:\n    traffic.sidecar.istio.io/includeInboundPorts: "8080"\n';
    const json = JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'a', namespace: 'b', annotations: { 'traffic.sidecar.istio.io/includeInboundPorts': '8080' } },
    });
    expect(parsePodManifest(yaml, 'x.yaml')).toEqual(parsePodManifest(json, 'x.json'));
    expect(parsePodManifest(yaml, 'x.yaml').metadata?.annotations).toEqual({ 'traffic.sidecar.istio.io/includeInboundPorts': '8080' });
  });

  it.each([
    ['kind: Deployment\n', 'kind is "Deployment"'],
    ['kind: Pod\n---\nkind: Pod\n', 'found 2'],
    ['', 'found 0'],
    ['kind: Pod\nmetadata: [1]\n', 'metadata is not an object'],
    ['kind: Pod\nmetadata:\n  annotations:\n    a: 8080\n', 'annotation a is not a string'],
    ['kind: Pod\nmetadata: {a: [}\n', 'not valid YAML/JSON'],
  ])('refuses %j', (text, message) => {
    expect(() => parsePodManifest(text, 'bad.yaml')).toThrow(PodManifestError);
    expect(() => parsePodManifest(text, 'bad.yaml')).toThrow(message);
  });
});
