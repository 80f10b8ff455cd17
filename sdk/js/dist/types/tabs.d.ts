/**
 * Which tabs of one origin are alive: the tabs map (`<prefix>_tabs`), each visible tab that
 * holds stored entries → the time of its last beat (ms since the epoch). A tab notes itself
 * there every BEAT ms (a few bytes: the stored queue is not rewritten for it) and removes
 * itself when hidden; the tabs not seen for STALE ms are removed by the next write, so the
 * map holds the live tabs only.
 */
import type { Store } from "./storage";
/** A visible tab holding stored entries beats every BEAT ms; entries of a tab whose beat
 * is older than STALE ms belong to a tab that is gone (crashed, killed): any page takes them. */
export declare const BEAT = 5000;
export declare const STALE = 15000;
/** Tab → its last beat. */
export type Beats = Record<string, number>;
/** Last seen alive (ms since the epoch) STALE ms ago or more, or never. */
export declare const old: (at?: number) => boolean;
/** Where the tabs map is kept. */
interface Place {
    store: Store;
    tabsKey: string;
}
/** The tabs map (a garbled one reads as empty). */
export declare function beats(c: Place): Beats;
/** Write the tabs map with `tab`'s beat now, or without it (`gone`: the tab is hidden), and
 * without the tabs not seen for STALE ms. */
export declare function beat(c: Place, tab: string, gone?: boolean): void;
export {};
