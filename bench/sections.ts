// Every benchmark section, in run order. To add one: export a `Section`
// (bench/section.ts) from a new file and list it here.

import { coreSection } from './core.ts';
import { fuseSection } from './fuse.ts';
import { liveSection } from './live.ts';
import { replogSection } from './replog.ts';
import type { Section } from './section.ts';
import { simSection } from './sim.ts';
import { storeSection } from './store.ts';

export const SECTIONS: readonly Section[] = [coreSection, fuseSection, replogSection, liveSection, simSection, storeSection];
