// Writes the kustomize tree (manifests/base, manifests/overlays/*, manifests/injection/admission-policy)
// from the Helm chart, the one source of the install (hack/lib/chart.ts says how).
//   npm run render:manifests            write it (and remove files of those directories it no longer writes)
//   npm run render:manifests -- --check  only compare; exit 1 naming every stale file
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ROOT, helmBinary, kustomizeTree, renderForKustomize, staleFiles } from './lib/chart.ts';

const check = process.argv.includes('--check');
const files = kustomizeTree(renderForKustomize(await helmBinary()));
const stale = await staleFiles(files);
if (check) {
  if (stale.length > 0) {
    console.error(`render-manifests: stale (run npm run render:manifests): ${stale.join(', ')}`);
    process.exit(1);
  }
  console.log('render-manifests: the kustomize tree is what the chart renders');
} else {
  for (const path of stale) {
    const content = files.get(path);
    if (content === undefined) await rm(join(ROOT, path));
    else {
      await mkdir(dirname(join(ROOT, path)), { recursive: true });
      await writeFile(join(ROOT, path), content);
    }
  }
  console.log(`render-manifests: ${stale.length === 0 ? 'nothing changed' : `wrote ${stale.join(', ')}`}`);
}
