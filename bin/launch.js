// Runs a command of src/cli from TypeScript source (tsx), so the checkout needs
// no build step: `npx mklessfs …` works right after `npm ci`.
import { register } from 'tsx/esm/api';

register();

export async function launch(modulePath, exportName) {
  const { runMain } = await import('../src/cli/common.ts');
  const mod = await import(modulePath);
  await runMain(mod[exportName]);
}
