import { readFileSync } from 'node:fs';
import { executeSchedule, simOptions } from './src/sim/campaign.ts';
const cap = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const lines: string[] = [];
await executeSchedule(simOptions(cap.options), cap.schedule, { traceLine: (l) => void lines.push(l) });
console.log(lines.filter((l) => /master/.test(l) && /(replog|crash|power|EIO|store \/master|blockdata.dta$)/.test(l) && !/disk\.(stat|read) /.test(l)).join('\n'));
