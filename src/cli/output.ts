/** Output formats shared by the listing commands: kubectl-style tables, JSON and YAML. */
import Table from 'cli-table3'
import { Option } from 'commander'
import pc from 'picocolors'
import { stringify } from 'yaml'

export type OutputFormat = 'table' | 'wide' | 'json' | 'yaml'

export const outputOption = (): Option => new Option('-o, --output <format>', 'output format').choices(['wide', 'json', 'yaml'])

const NO_BORDER = {
  top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
  left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '',
}

/** Columns aligned as kubectl prints them: upper-case heads, three spaces between columns, no borders. */
export function table(head: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const t = new Table({ head: [...head], chars: NO_BORDER, style: { head: [], border: [], 'padding-left': 0, 'padding-right': 3, compact: true } })
  for (const r of rows) t.push([...r])
  return t.toString().split('\n').map((l) => l.trimEnd()).join('\n') + '\n'
}

/** JSON (2-space, trailing newline) or YAML of the same document. */
export function structured(format: 'json' | 'yaml', doc: unknown): string {
  return format === 'json' ? JSON.stringify(doc, null, 2) + '\n' : stringify(doc)
}

/** A number or `-` when the source cannot tell (never a made-up 0). */
export const count = (n: number | undefined): string => (n === undefined ? '-' : String(n))

/** Colours for a terminal; plain text otherwise (NO_COLOR and FORCE_COLOR are honoured by picocolors). */
export function colours(enabled: boolean): ReturnType<typeof pc.createColors> {
  return pc.createColors(enabled && pc.isColorSupported)
}
