// Kubeconfigs pointing the real @kubernetes/client-node at a fake API server. client-node
// 2.x refuses an http:// server unless the cluster sets insecure-skip-tls-verify.
import { KubeConfig } from '@kubernetes/client-node'
import { stringify } from 'yaml'

export interface KubeconfigOptions {
  token?: string
  namespace?: string
}

/** The kubeconfig file text for `server` (an http://127.0.0.1:PORT URL). */
export function kubeconfigYaml (server: string | { url: string }, options: KubeconfigOptions = {}): string {
  const url = typeof server === 'string' ? server : server.url
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'fake', cluster: { server: url, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'fake-user', user: { token: options.token ?? 'fake-token' } }],
    contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake-user', ...(options.namespace === undefined ? {} : { namespace: options.namespace }) } }],
    'current-context': 'fake',
  })
}

/** A loaded KubeConfig for `server`, parsed from the same text a user's file would hold. */
export function kubeConfigFor (server: string | { url: string }, options: KubeconfigOptions = {}): KubeConfig {
  const kubeConfig = new KubeConfig()
  kubeConfig.loadFromString(kubeconfigYaml(server, options))
  return kubeConfig
}
