// A local endpoint source that stays unsynced until the test says so: the state of a
// Kubernetes source whose API server has not answered its first list yet.
import { LocalEndpointSource } from '../../src/local/endpoint-source.ts'

export class UnsyncedSource extends LocalEndpointSource {
  override start (): Promise<void> {
    return Promise.resolve()
  }

  /** The first complete view has arrived. */
  markSynced (): void {
    void super.start()
  }
}
