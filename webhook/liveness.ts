/**
 * The runtime container's liveness probe carries timeout recovery (SPEC §5): after a handler
 * timeout the sidecar removes the ready file, the probe fails, the kubelet restarts the hung
 * runtime. A user's own liveness probe used to replace ours and silently switch that off.
 *
 * A container has one liveness probe, so we compose: the user's check (exec, httpGet or tcpSocket)
 * runs inside one exec probe that first requires the ready file. Their timing fields
 * (initialDelaySeconds, periodSeconds, failureThreshold, ...) are kept; their check keeps its own
 * network timeout. What cannot be composed (gRPC probes, a named port the container does not
 * declare, a probe with no handler) is left exactly as the user wrote it, and the caller admits the
 * pod with a warning and an Event saying recovery is off and why.
 *
 * Pure functions; the probe program is Python because python3 is the one binary every runtime
 * image has (distroless images lack sh), run with -S so a probe costs milliseconds. HTTPS is not
 * verified, like the kubelet's own HTTPS probes.
 */

type J = Record<string, unknown>

function isObj(v: unknown): v is J {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export type LivenessDecision =
  /** No user probe: ours. */
  | { kind: 'ours'; probe: J }
  /** The user's probe already checks the ready file: left as it is. */
  | { kind: 'kept'; probe: J }
  /** The user's check, behind the ready-file check. */
  | { kind: 'composed'; probe: J; check: 'exec' | 'httpGet' | 'tcpSocket' }
  /** Left as the user wrote it; recovery after a timeout is off for this pod. */
  | { kind: 'recovery_off'; probe: J; why: string }

/**
 * Process start-up (python3 -S plus, for HTTP, urllib and ssl) on a busy node can take a good part
 * of a second, which the kubelet's default 1 s exec timeout would count as a failure and restart a
 * healthy runtime for it. The composed probe gets at least this long; the user's own check keeps
 * its timeout inside.
 */
export const COMPOSED_MIN_TIMEOUT_SECONDS = 5

/** Python literal of a JSON-safe value built from strings, numbers, lists and string maps only. */
function py(v: string | number | readonly string[] | ReadonlyArray<readonly [string, string]>): string {
  return JSON.stringify(v)
}

/** The pod's own IP, like the kubelet dials, with loopback as the fallback (hostNetwork, odd hosts files). */
const POD_IP = 'def ip():\n try:return socket.gethostbyname(socket.gethostname())\n except OSError:return "127.0.0.1"\n'

function port(value: unknown, container: J): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value > 0 && value < 65536) return value
  if (typeof value !== 'string') return undefined
  const ports = Array.isArray(container.ports) ? container.ports.filter(isObj) : []
  const p = ports.find((x) => x.name === value)?.containerPort
  return typeof p === 'number' ? p : undefined
}

function withReady(readyFile: string, imports: string, body: string): string {
  return `import os,sys${imports}\nif not os.path.exists(${py(readyFile)}):sys.exit(1)\n${body}`
}

/** The program of the composed probe, or why there is none. */
function program(probe: J, container: J, readyFile: string, timeout: number): { check: 'exec' | 'httpGet' | 'tcpSocket'; code: string } | { why: string } {
  if (isObj(probe.exec)) {
    const cmd = probe.exec.command
    if (!Array.isArray(cmd) || cmd.length === 0 || !cmd.every((c) => typeof c === 'string')) return { why: 'its exec probe has no command' }
    return { check: 'exec', code: withReady(readyFile, ',subprocess', `sys.exit(subprocess.call(${py(cmd as string[])}))`) }
  }
  if (isObj(probe.tcpSocket)) {
    const p = port(probe.tcpSocket.port, container)
    if (p === undefined) return { why: `its tcpSocket probe's port ${JSON.stringify(probe.tcpSocket.port)} is not a port of the container` }
    const host = typeof probe.tcpSocket.host === 'string' && probe.tcpSocket.host !== '' ? py(probe.tcpSocket.host) : 'ip()'
    return { check: 'tcpSocket', code: withReady(readyFile, ',socket', `${POD_IP}try:socket.create_connection((${host},${p}),${timeout}).close()\nexcept OSError:sys.exit(1)\n`) }
  }
  if (isObj(probe.httpGet)) {
    const g = probe.httpGet
    const p = port(g.port, container)
    if (p === undefined) return { why: `its httpGet probe's port ${JSON.stringify(g.port)} is not a port of the container` }
    const scheme = g.scheme === 'HTTPS' ? 'https' : 'http'
    const rawPath = typeof g.path === 'string' && g.path !== '' ? g.path : '/'
    const path = rawPath.startsWith('/') ? rawPath : `/${rawPath}`
    // The kubelet's defaults, overridable by the probe's own headers.
    const headers = new Map<string, string>([['User-Agent', 'kube-probe/asya'], ['Accept', '*/*']])
    for (const h of Array.isArray(g.httpHeaders) ? g.httpHeaders.filter(isObj) : []) {
      if (typeof h.name === 'string' && typeof h.value === 'string') {
        for (const k of [...headers.keys()]) if (k.toLowerCase() === h.name.toLowerCase()) headers.delete(k)
        headers.set(h.name, h.value)
      }
    }
    const host = typeof g.host === 'string' && g.host !== '' ? py(g.host) : 'ip()'
    // http.client, not urllib: a redirect counts as success without being followed (the kubelet
    // follows same-host redirects; 200–399 is success either way), and it starts faster.
    const conn = scheme === 'https' ? `http.client.HTTPSConnection(h,${p},timeout=${timeout},context=ssl._create_unverified_context())` : `http.client.HTTPConnection(h,${p},timeout=${timeout})`
    const code = withReady(
      readyFile,
      `,socket${scheme === 'https' ? ',ssl' : ''},http.client`,
      `${POD_IP}h=${host}\nc=${conn}\n` +
        `try:c.request("GET",${py(path)},headers=dict(${py([...headers])}));s=c.getresponse().status\nexcept Exception:sys.exit(1)\n` +
        'sys.exit(0 if 200<=s<400 else 1)\n',
    )
    return { check: 'httpGet', code }
  }
  if (isObj(probe.grpc)) return { why: 'its grpc probe cannot be combined with a file check (python3 has no gRPC client in its standard library)' }
  return { why: 'its probe has no exec, httpGet or tcpSocket handler' }
}

/**
 * Decides the runtime container's liveness probe. `ours` is the probe used when the user set none.
 */
export function decideLiveness(container: J, readyFile: string, ours: J): LivenessDecision {
  const user = container.livenessProbe
  if (user === undefined) return { kind: 'ours', probe: ours }
  if (!isObj(user)) return { kind: 'recovery_off', probe: user as J, why: 'its livenessProbe is not an object' }
  if (JSON.stringify(user).includes(readyFile)) return { kind: 'kept', probe: user }
  const timeout = typeof user.timeoutSeconds === 'number' && user.timeoutSeconds > 0 ? user.timeoutSeconds : 1
  const made = program(user, container, readyFile, timeout)
  if ('why' in made) return { kind: 'recovery_off', probe: user, why: made.why }
  const probe: J = {}
  for (const [k, v] of Object.entries(user)) if (k !== 'exec' && k !== 'httpGet' && k !== 'tcpSocket') probe[k] = v
  probe.exec = { command: ['python3', '-S', '-c', made.code] }
  probe.timeoutSeconds = Math.max(timeout, COMPOSED_MIN_TIMEOUT_SECONDS)
  return { kind: 'composed', probe, check: made.check }
}
