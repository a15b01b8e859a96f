// The seeded Buggify of one simulated node (FoundationDB style): each site of
// src/core/buggify.ts is switched on for the run with SITE_ON_PROBABILITY and
// draws how often it fires when reached; a fire writes `buggify SITE NODE` to
// the scheduler trace (folded into the trace hash, counted by lessfs-sim).
// Each site draws from its own stream, split from the node's by the site's
// name, so one site firing more never changes what another does.

import { BUGGIFY_SITES, type Buggify, type BuggifySite } from '../core/buggify.ts';
import type { SimRng } from './rng.ts';
import type { Scheduler } from './scheduler.ts';

/** Chance that a site is on for a run (FoundationDB: 0.25). */
export const SITE_ON_PROBABILITY = 0.25;
/** How often a site that is on fires when reached; each site draws one per run. */
export const FIRE_PROBABILITIES = [0.01, 0.05, 0.25] as const;

interface SiteState {
  on: boolean;
  fireProbability: number;
  rng: SimRng;
}

export class SimBuggify implements Buggify {
  readonly enabled = true;
  /** Sites stop firing once calmed (the harness heals everything before its final checks). */
  private calmed = false;
  private readonly sites = new Map<BuggifySite, SiteState>();
  /** Fires so far, per site. */
  readonly fired = new Map<BuggifySite, number>();

  /** `only`: these sites are on for sure and no other is (tests aiming at one site). */
  constructor(
    rng: SimRng,
    private readonly scheduler: Scheduler,
    private readonly node: string,
    only?: readonly BuggifySite[],
  ) {
    for (const site of Object.keys(BUGGIFY_SITES) as BuggifySite[]) {
      const r = rng.split(`buggify/${site}`);
      const on = r.chance(SITE_ON_PROBABILITY);
      const fireProbability = r.pick(FIRE_PROBABILITIES);
      this.sites.set(site, { on: only ? only.includes(site) : on, fireProbability, rng: r });
    }
  }

  /** Sites on for this run. */
  get sitesOn(): BuggifySite[] {
    return [...this.sites].filter(([, s]) => s.on).map(([site]) => site);
  }

  calm(): void {
    this.calmed = true;
  }

  fires(site: BuggifySite): boolean {
    const s = this.sites.get(site);
    if (!s) throw new RangeError(`unknown buggify site '${site}' (expected one of ${Object.keys(BUGGIFY_SITES).join(', ')})`);
    if (!s.on || this.calmed || !s.rng.chance(s.fireProbability)) return false;
    this.fired.set(site, (this.fired.get(site) ?? 0) + 1);
    this.scheduler.trace(`buggify ${site} ${this.node}`);
    return true;
  }

  int(site: BuggifySite, maxExclusive: number): number {
    const s = this.sites.get(site);
    if (!s) throw new RangeError(`unknown buggify site '${site}'`);
    return s.rng.int(maxExclusive);
  }
}

/** How a cluster builds its nodes' Buggify: off (the default), seeded, or only the given sites on. */
export interface BuggifyChoice {
  buggify?: boolean;
  /** With buggify: exactly these sites are on (tests aiming at one site). */
  buggifySites?: readonly BuggifySite[];
}

/** A node's Buggify as the cluster options ask, seeded from the node's stream; undefined when off. */
export function nodeBuggify(choice: BuggifyChoice, rng: SimRng, scheduler: Scheduler, node: string): SimBuggify | undefined {
  if (!choice.buggify) return undefined;
  return new SimBuggify(rng.split('buggify'), scheduler, node, choice.buggifySites);
}
