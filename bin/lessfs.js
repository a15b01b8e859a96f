#!/usr/bin/env -S node --max-semi-space-size=8
import { launch } from './launch.js';

await launch('../src/cli/lessfs.ts', 'lessfs');
