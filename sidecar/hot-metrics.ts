/**
 * Metrics on the per-message path with their label values bound once (per actor, per destination),
 * for prom-client's Counter, Gauge and Histogram.
 *
 * prom-client pays on every `observe(labels, v)` / `inc(labels)`: it validates the label names,
 * builds the label-set key string, converts each bucket bound to a property key and allocates a
 * pair object; with 8-10 of these per envelope that was a visible share of a hop's CPU (docs/sidecar.md,
 * "Where a hop's CPU goes"). A bound instrument does the first update through prom-client itself
 * (so the series exists exactly as prom-client would create it, with the same validation) and keeps
 * a reference to that series; later updates change the same series in place. The exposition is
 * prom-client's own (same names, labels, order, buckets), and updates made through the prom-client
 * objects directly (tests, rare paths) land on the same series. When the series is no longer the
 * one in the metric (reset(), remove()), or a value is one prom-client would refuse, the update goes
 * through prom-client again, which throws or re-creates the series as before.
 */
import type { Counter, Gauge, Histogram } from 'prom-client'

type Labels = Record<string, string | number>

/** The series prom-client keeps per label set (its hashMap values). */
interface Series {
  value: number
  sum: number
  count: number
  bucketValues: Record<string, number>
}

/** The parts of a prom-client metric this module relies on. */
interface Internals {
  hashMap: Record<string, Series>
  sortedLabelNames: string[]
  upperBounds?: number[]
}

/** prom-client's key of a label set (util.js hashObject with the metric's sorted label names). */
function seriesKey(m: Internals, labels: Labels): string {
  let key = ''
  for (const name of m.sortedLabelNames) {
    const v = labels[name]
    if (v !== undefined) key += `${name}:${v},`
  }
  return key
}

abstract class Bound {
  protected series: Series | undefined
  protected readonly key: string
  protected readonly m: Internals

  constructor(metric: object, protected readonly labels: Labels) {
    this.m = metric as unknown as Internals
    this.key = seriesKey(this.m, labels)
  }

  /** The bound series, when it is still the metric's. */
  protected live(): Series | undefined {
    const s = this.series
    return s !== undefined && this.m.hashMap[this.key] === s ? s : undefined
  }

  protected relocate(): void {
    this.series = this.m.hashMap[this.key]
  }
}

export class BoundCounter extends Bound {
  constructor(private readonly metric: Counter<string>, labels: Labels = {}) {
    super(metric, { ...labels })
  }

  inc(value = 1): void {
    const s = this.live()
    if (s !== undefined && value >= 0 && Number.isFinite(value)) {
      s.value += value
      return
    }
    this.metric.inc(this.labels, value)
    this.relocate()
  }
}

export class BoundGauge extends Bound {
  constructor(private readonly metric: Gauge<string>, labels: Labels = {}) {
    super(metric, { ...labels })
  }

  set(value: number): void {
    const s = this.live()
    if (s !== undefined && typeof value === 'number') {
      s.value = value
      return
    }
    this.metric.set(this.labels, value)
    this.relocate()
  }

  inc(value = 1): void {
    const s = this.live()
    if (s !== undefined && typeof value === 'number') {
      s.value += value
      return
    }
    this.metric.inc(this.labels, value)
    this.relocate()
  }

  dec(value = 1): void {
    this.inc(-value)
  }
}

export class BoundHistogram extends Bound {
  private readonly bounds: number[]
  /** The bucket bounds as the property keys of prom-client's bucketValues. */
  private readonly bucketKeys: string[]

  constructor(private readonly metric: Histogram<string>, labels: Labels = {}) {
    super(metric, { ...labels })
    this.bounds = [...(this.m.upperBounds ?? [])]
    this.bucketKeys = this.bounds.map((b) => String(b))
  }

  observe(value: number): void {
    const s = this.live()
    if (s === undefined || !Number.isFinite(value)) {
      this.metric.observe(this.labels, value)
      this.relocate()
      return
    }
    s.sum += value
    s.count += 1
    // The first bucket whose bound holds the value (prom-client's findBound); above all: none.
    const bounds = this.bounds
    for (let i = 0; i < bounds.length; i++) {
      if (value <= (bounds[i] as number)) {
        const k = this.bucketKeys[i] as string
        s.bucketValues[k] = (s.bucketValues[k] as number) + 1
        return
      }
    }
  }
}

/** Bound instruments of one metric by a label value known only on the path (a destination, a status). */
export class BoundBy<B> {
  private readonly byKey = new Map<string, B>()

  constructor(private readonly make: (key: string) => B) {}

  get(key: string): B {
    let b = this.byKey.get(key)
    if (b === undefined) {
      b = this.make(key)
      this.byKey.set(key, b)
    }
    return b
  }
}
