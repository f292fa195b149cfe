/**
 * MCP endpoint metrics, on the gateway's registry (GET /metrics). docs/metrics.md lists them.
 */
import { Counter, Gauge, type Registry } from 'prom-client'

export class McpMetrics {
  readonly requests: Counter<'method' | 'outcome'>
  readonly waiting: Gauge
  readonly waitResults: Counter<'status'>

  constructor(registry: Registry) {
    const registers = [registry]
    const existing = <T>(name: string): T | undefined => registry.getSingleMetric(name) as T | undefined
    this.requests =
      existing('asya_gateway_mcp_requests_total') ??
      new Counter({
        name: 'asya_gateway_mcp_requests_total',
        help: 'MCP JSON-RPC messages on POST /mcp, by method and outcome (ok, rejected = HTTP 4xx, error = HTTP 5xx, unknown_session)',
        labelNames: ['method', 'outcome'],
        registers,
      })
    this.waiting =
      existing('asya_gateway_mcp_waiting_calls') ?? new Gauge({ name: 'asya_gateway_mcp_waiting_calls', help: 'MCP tools/call requests waiting for their envelope to finish', registers })
    this.waitResults =
      existing('asya_gateway_mcp_wait_results_total') ??
      new Counter({
        name: 'asya_gateway_mcp_wait_results_total',
        help: 'Waiting MCP tool calls answered, by final status (succeeded, failed, abandoned = the client went away)',
        labelNames: ['status'],
        registers,
      })
  }
}
