import type { InjectionConfig } from '../../src/system/config.js'

/** A fixed configuration: goldens must not change with the machine's env. */
export const testConfig: InjectionConfig = {
  sidecarImage: 'ghcr.io/asya-ts/asya-sidecar:test',
  sidecarImagePullPolicy: 'IfNotPresent',
  sidecarCommand: ['node', 'dist/sidecar/main.js'],
  sidecarResources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
  sidecarRunAsUser: 65532,
  shutdownMarginSeconds: 5,
  gatewayUrl: 'http://asya-gateway.asya-system.svc:8080',
  transports: {
    defaultTransport: 'rabbitmq',
    watchNamespaces: [],
    rabbitmq: {
      host: 'rabbitmq.asya-system.svc',
      port: 5672,
      vhost: '/',
      exchange: 'asya',
      username: 'ignored-user',
      password: 'never-inline-this',
      managementUrl: 'http://rabbitmq.asya-system.svc:15672',
      credentialSecret: { name: 'asya-rabbitmq', usernameKey: 'username', passwordKey: 'password' },
    },
    sqs: {
      region: 'eu-west-1',
      endpoint: 'http://fauxqs:4566',
      accountId: '000000000000',
      auth: { kind: 'secret', secretName: 'asya-sqs', accessKeyIdKey: 'AWS_ACCESS_KEY_ID', secretAccessKeyKey: 'AWS_SECRET_ACCESS_KEY' },
    },
    nats: {
      connection: { servers: ['nats://nats-0.nats.asya-system.svc:4222', 'nats://nats-1.nats.asya-system.svc:4222'], user: 'ignored-user', password: 'never-inline-this', maxAckPending: 1000, replicas: 3 },
      monitoringEndpoint: 'nats.asya-system.svc:8222',
      account: '$G',
      monitoringHttps: false,
      credentialSecret: { name: 'asya-nats', usernameKey: 'username', passwordKey: 'password' },
    },
  },
  excludedNamespaces: ['kube-system', 'kube-public', 'kube-node-lease', 'asya-system', 'legacy-apps'],
}
