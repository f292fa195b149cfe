import type { InjectionConfig } from '../../src/system/config.js'

/** A fixed configuration: goldens must not change with the machine's env. */
export const testConfig: InjectionConfig = {
  sidecarImage: 'ghcr.io/asya-ts/asya-sidecar:test',
  sidecarImagePullPolicy: 'IfNotPresent',
  sidecarCommand: ['node', 'dist/sidecar/main.js'],
  sidecarResources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
  sidecarRunAsUser: 65532,
  shutdownMarginSeconds: 5,
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
  },
  excludedNamespaces: ['kube-system', 'kube-public', 'kube-node-lease', 'asya-system', 'legacy-apps'],
}
