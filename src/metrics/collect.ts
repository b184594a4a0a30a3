// Metrics whose values are read from live state when Prometheus scrapes,
// instead of being counted on the packet path: each collect() starts from
// nothing and reports what the state holds now (a peer that left is gone).
import { Counter, Gauge, type Registry } from 'prom-client';

export type Labels<L extends string> = Partial<Record<L, string>>;
export type Emit<L extends string> = (labels: Labels<L>, value: number) => void;
type Read<L extends string> = (emit: Emit<L>) => void | Promise<void>;

/** A counter whose totals are kept elsewhere (the device, the filter, the mesh). */
export function liveCounter<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[], read: Read<L>): Counter<L> {
  return new Counter<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    async collect() {
      this.reset();
      await read((labels, value) => this.inc(labels, value));
    },
  });
}

/** A gauge read from the state at scrape time. */
export function liveGauge<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[], read: Read<L>): Gauge<L> {
  return new Gauge<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    async collect() {
      this.reset();
      await read((labels, value) => this.set(labels, value));
    },
  });
}

/**
 * `fn`'s value, shared by the metrics of one scrape: the registry calls every
 * collect() in one synchronous loop, so the value lives until that loop ends.
 */
export function memo<T>(fn: () => T): () => T {
  let cached: { value: T } | null = null;
  return () => {
    if (!cached) {
      cached = { value: fn() };
      queueMicrotask(() => (cached = null));
    }
    return cached.value;
  };
}
