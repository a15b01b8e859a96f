// Entry of a campaign worker thread (parallel.ts). The simulator is
// TypeScript, loaded through tsx as bin/launch.js loads the commands.
import { register } from 'tsx/esm/api';

register();
await import('./seed-worker.ts');
