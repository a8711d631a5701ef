// The tags every resource of a run carries: the user's, a Name, and the run tag that the
// runner role's policies scope their deletions by (policies/).
import type { ResourceType, TagSpecification } from '@aws-sdk/client-ec2'
import type { RunContext } from './context.js'
import { runIdOf } from './run-id.js'

export const RUN_TAG = 'instance-to-ebs:run'

/** The user's tags, the run tag, and a Name unless the user gave one. */
export function tagsFor(ctx: RunContext, name: string): { Key: string; Value: string }[] {
  const tags = [...ctx.settings.ami.tags]
  if (!tags.some((t) => t.Key === 'Name')) tags.push({ Key: 'Name', Value: name })
  tags.push({ Key: RUN_TAG, Value: runIdOf(ctx) })
  return tags
}

export const tagSpec = (ctx: RunContext, type: ResourceType, name: string): TagSpecification[] => [
  { ResourceType: type, Tags: tagsFor(ctx, name) }
]
