// Reading a Pod manifest (YAML or JSON; JSON is YAML) from a file, for the operator CLI.
import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import type { PodLike } from './redirect/index.ts';

export class PodManifestError extends Error {
  override name = 'PodManifestError';
}

/** Parses manifest text; `source` names the file in errors. Exactly one document of kind Pod. */
export function parsePodManifest(text: string, source: string): PodLike {
  const documents = parseAllDocuments(text).filter((doc) => doc.contents !== null);
  if (documents.length !== 1) {
    throw new PodManifestError(`${source}: expected one Pod document, found ${documents.length}`);
  }
  const doc = documents[0]!;
  if (doc.errors.length > 0) throw new PodManifestError(`${source}: not valid YAML/JSON: ${doc.errors[0]!.message}`);
  const value: unknown = doc.toJS();
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new PodManifestError(`${source}: not a Kubernetes object`);
  }
  const object = value as Record<string, unknown>;
  if (object.kind !== 'Pod') throw new PodManifestError(`${source}: kind is ${JSON.stringify(object.kind)}, expected "Pod"`);
  const metadata = object.metadata;
  if (metadata !== undefined && (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))) {
    throw new PodManifestError(`${source}: metadata is not an object`);
  }
  const annotations = (metadata as Record<string, unknown> | undefined)?.annotations;
  if (annotations !== undefined && annotations !== null) {
    if (typeof annotations !== 'object' || Array.isArray(annotations)) {
      throw new PodManifestError(`${source}: metadata.annotations is not a map`);
    }
    for (const [key, annotation] of Object.entries(annotations)) {
      if (typeof annotation !== 'string') {
        throw new PodManifestError(`${source}: annotation ${key} is not a string (quote it): ${JSON.stringify(annotation)}`);
      }
    }
  }
  return object as PodLike;
}

export async function readPodManifest(path: string): Promise<PodLike> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new PodManifestError(`cannot read pod file ${path}: ${(error as Error).message}`);
  }
  return parsePodManifest(text, path);
}
