// Every resource the action creates is written here the moment it exists, and the ledger is
// saved to the runner's state at once, so that the `post` entry can remove what a dead main left.
import * as core from '@actions/core'

export const LEDGER_STATE = 'ledger'
/** Saved by main so that post builds its clients like main did. */
export const REGION_STATE = 'region'
export const ATTEMPTS_STATE = 'max-attempts'

export type ResourceKind =
  | 'instance' // a temporary helper: terminated
  | 'command' // a running SSM command: cancelled
  | 'remote-undo' // the undo journal of a remote script that may have been killed: cleanup.sh sent
  | 'attachment' // a volume attached to the helper: detached
  | 'volume' // the working volume: deleted
  | 'parameter' // a temporary SecureString: deleted
  | 'snapshot' // the new snapshot: deleted unless the run succeeded
  | 'image' // a new AMI: deregistered unless the run succeeded
  | 'bundle' // uploaded bundle objects: deleted unless the run succeeded or keep-bundle
  | 'work-dir' // the runner's folder for the image (convert-on: runner): removed

/** `always`: temporary, removed even after success. `failure`: a product, removed only when the run fails. */
export type RemovePolicy = 'always' | 'failure'

export interface Resource {
  kind: ResourceKind
  id: string
  region: string
  removeOn: RemovePolicy
  /** The step that created it: the unwinding removes it, with its kind's remover, when it undoes that step. */
  step: string
  /** Extra facts the removal needs (the instance a volume is attached to, a bucket and prefix…). */
  detail?: Record<string, string>
}

export type NewResource = Omit<Resource, 'step' | 'region'> & { region?: string }

export class Ledger {
  private items: Resource[]
  currentStep = 'setup'

  constructor(
    readonly region: string,
    items: Resource[] = [],
    private readonly persist: (json: string) => void = (json) => core.saveState(LEDGER_STATE, json)
  ) {
    this.items = [...items]
  }

  static fromState(json: string, persist?: (json: string) => void): Ledger {
    const items = json.trim() === '' ? [] : (JSON.parse(json) as Resource[])
    return new Ledger(items[0]?.region ?? '', items, persist)
  }

  record(resource: NewResource): Resource {
    const entry: Resource = { region: this.region, step: this.currentStep, ...resource }
    this.items.push(entry)
    this.save()
    return entry
  }

  forget(kind: ResourceKind, id: string): void {
    const before = this.items.length
    this.items = this.items.filter((r) => !(r.kind === kind && r.id === id))
    if (this.items.length !== before) this.save()
  }

  find(kind: ResourceKind, id?: string): Resource | undefined {
    return this.items.find((r) => r.kind === kind && (id === undefined || r.id === id))
  }

  entries(): readonly Resource[] {
    return this.items
  }

  private save(): void {
    this.persist(JSON.stringify(this.items))
  }
}

export const describeResource = (r: Resource): string => `${r.kind} ${r.id}`
