// The video bitrate follows the backlog, as the native agent's `bitrate.rs` (same bounds,
// same steps): 120–600 kbit/s, ×0.75 while the backlog passes 8 s and grows, ×1.15 (at
// least +20) after 10 s drained, 4 s between changes, the floor while storage is low.

export const MIN_KBPS = 120;
export const MAX_KBPS = 600;
export const START_KBPS = 500;
const HIGH_BACKLOG_S = 8;
const LOW_BACKLOG_S = 4;
const CALM_BEFORE_RISE_S = 10;
const SETTLE_S = 4;

export class BitrateController {
  kbps = START_KBPS;
  #sinceChange = SETTLE_S;
  #calm = 0;
  #lastBacklog = 0;

  /** Called every `elapsedS`; returns the new target when it changes, else null. */
  tick(elapsedS, { backlogS, diskLow }) {
    this.#sinceChange += elapsedS;
    const growing = backlogS >= this.#lastBacklog;
    this.#lastBacklog = backlogS;
    this.#calm = backlogS <= LOW_BACKLOG_S ? this.#calm + elapsedS : 0;
    let target = this.kbps;
    if (diskLow) target = MIN_KBPS;
    else if (backlogS > HIGH_BACKLOG_S && growing && this.#sinceChange >= SETTLE_S) target = Math.max(Math.floor((this.kbps * 3) / 4), MIN_KBPS);
    else if (this.#calm >= CALM_BEFORE_RISE_S && this.#sinceChange >= SETTLE_S)
      target = Math.min(Math.max(Math.floor((this.kbps * 115) / 100), this.kbps + 20), MAX_KBPS);
    if (target === this.kbps) return null;
    this.kbps = target;
    this.#sinceChange = 0;
    if (backlogS <= LOW_BACKLOG_S) this.#calm = 0;
    return target;
  }
}
