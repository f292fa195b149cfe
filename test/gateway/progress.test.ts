/** The progress rules as pure functions (SPEC §10.2): formula, monotonic, stale reports, implied states in order. */
import t from 'tap'
import { completionRows, foldProgress, progressPercent, progressRows, progressStep } from '../../gateway/store/types.js'

const fmt = (rows: ReturnType<typeof progressRows>) => rows.map((r) => `${r.idx}:${r.state}@${r.percent}`)

t.test('formula: (idx·100 + weight) / len, capped, never below the previous value', async (t) => {
  t.equal(progressPercent(0, 'received', 3), 3.33)
  t.equal(progressPercent(0, 'completed', 2), 50, 'the first of two actors completed is 50 %, not 100 % (SPEC §11 #16)')
  t.equal(progressPercent(1, 'processing', 2), 75)
  t.equal(progressPercent(5, 'completed', 2), 100)
  t.equal(progressPercent(0, 'received', 2, 60), 60)
})

t.test('in-order reports give one row each', async (t) => {
  t.same(fmt(progressRows(-1, 0, 2, 0, 'received', 'hi')), ['0:received@5'])
  t.same(progressRows(-1, 0, 2, 0, 'received', 'hi')[0]?.message, 'hi')
  t.same(fmt(progressRows(progressStep(0, 'received'), 5, 2, 0, 'processing')), ['0:processing@25'])
})

t.test('a late report is stale; an early one records what it implies, in order', async (t) => {
  t.same(progressRows(progressStep(1, 'received'), 55, 2, 0, 'completed'), [], 'actor 0 completed arrives after actor 1 received')
  t.same(progressRows(progressStep(0, 'processing'), 25, 2, 0, 'processing'), [], 'duplicate')
  t.same(fmt(progressRows(progressStep(0, 'processing'), 25, 2, 1, 'received')), ['0:completed@50', '1:received@55'])
  t.same(fmt(progressRows(-1, 0, 2, 0, 'completed')), ['0:received@5', '0:processing@25', '0:completed@50'])
  t.same(fmt(progressRows(progressStep(0, 'completed'), 50, 4, 2, 'processing')), ['2:received@52.5', '2:processing@62.5'], 'a skipped actor (envelope-mode jump) is not invented')
  t.same(fmt(progressRows(-1, 0, 2, 1, 'received')), ['0:received@5', '0:processing@25', '0:completed@50', '1:received@55'], 'the actor the envelope was sent to first certainly ran: its states come first when a later report wins the race')
  t.same(fmt(progressRows(5, 0, 4, 3, 'received', undefined, 2)), ['2:received@52.5', '2:processing@62.5', '2:completed@75', '3:received@77.5'], 'a child started at actor 2 gets actor 2 implied, not actors 0-1')
  t.same(fmt(progressRows(5, 0, 4, 2, 'processing', undefined, 2)), ['2:received@52.5', '2:processing@62.5'])
})

t.test('the publisher a report names (from_actor_idx) certainly ran: its states are recorded before the report, once', async (t) => {
  // The overtaking of batched progress: actor 0 completed, actor 1's three reports still in its
  // sidecar's batch, actor 2's `received` (published by actor 1) arrives first.
  const done0 = progressStep(0, 'completed')
  t.same(fmt(progressRows(done0, 33.33, 3, 2, 'received')), ['2:received@70'], 'without the publisher, actor 1 is not invented (it may have been skipped)')
  t.same(fmt(progressRows(done0, 33.33, 3, 2, 'received', 'r2', 0, 1)), ['1:received@36.67', '1:processing@50', '1:completed@66.67', '2:received@70'])
  t.same(progressRows(done0, 33.33, 3, 2, 'received', 'r2', 0, 1).map((r) => r.message), [undefined, undefined, undefined, 'r2'], 'the message stays on the reported state')
  t.same(progressRows(progressStep(2, 'received'), 70, 3, 1, 'completed'), [], "then actor 1's own late reports are stale: nothing added, nothing moves back")
  t.same(fmt(progressRows(progressStep(1, 'received'), 36.67, 3, 2, 'received', undefined, 0, 1)), ['1:processing@50', '1:completed@66.67', '2:received@70'], 'the publisher is the previous reporter: its rest, once')
  t.same(fmt(progressRows(-1, 0, 3, 2, 'received', undefined, 0, 1)), ['0:received@3.33', '0:processing@16.67', '0:completed@33.33', '1:received@36.67', '1:processing@50', '1:completed@66.67', '2:received@70'], 'start actor and publisher, in route order')
  t.same(fmt(progressRows(-1, 0, 3, 2, 'received', undefined, 0, 0)), ['0:received@3.33', '0:processing@16.67', '0:completed@33.33', '2:received@70'], 'the publisher is the start actor (actor 1 skipped)')
  t.same(fmt(progressRows(done0, 33.33, 3, 1, 'received', undefined, 0, 1)), ['1:received@36.67'], 'a publisher at or after the reporter is ignored')
  t.same(fmt(progressRows(-1, 0, 4, 3, 'received', undefined, 2, 1)), ['2:received@52.5', '2:processing@62.5', '2:completed@75', '3:received@77.5'], 'a publisher before the start actor (an adopted fan-out child) is not recorded')
  t.same(fmt(progressRows(done0, 60, 3, 2, 'received', undefined, 0, 1)), ['1:received@60', '1:processing@60', '1:completed@66.67', '2:received@70'], 'never below the stored percentage')
})

t.test('succeeded completes the last reporter', async (t) => {
  t.same(fmt(completionRows(progressStep(2, 'processing'), 83.33, 3)), ['2:completed@100'])
  t.same(completionRows(progressStep(2, 'completed'), 100, 3), [])
  t.same(completionRows(-1, 0, 3), [])
})

t.test('a batch folds later states of the same actor into one report, and nothing else', async (t) => {
  const route = ['a', 'b']
  t.same(
    foldProgress([
      { actors: route, currentActorIdx: 0, state: 'received', message: 'r0' },
      { actors: route, currentActorIdx: 0, state: 'processing', message: 'p0' },
      { actors: route, currentActorIdx: 0, state: 'completed', message: 'c0' },
    ]),
    [{ actors: route, currentActorIdx: 0, state: 'completed', message: 'c0', earlierMessages: { received: 'r0', processing: 'p0' } }],
  )
  const other = [
    { actors: route, currentActorIdx: 0, state: 'completed' as const },
    { actors: route, currentActorIdx: 1, state: 'received' as const },
  ]
  t.same(foldProgress(other), other, 'different actors stay apart')
  const again = [
    { actors: route, currentActorIdx: 0, state: 'completed' as const },
    { actors: route, currentActorIdx: 0, state: 'received' as const, message: 'retry' },
  ]
  t.same(foldProgress(again), again, 'an earlier state after a later one (a retried message) is not folded')
  const longer = [
    { actors: route, currentActorIdx: 0, state: 'received' as const },
    { actors: [...route, 'c'], currentActorIdx: 0, state: 'processing' as const },
  ]
  t.same(foldProgress(longer), longer, 'another route (an envelope-mode handler extended it) is not folded')
  t.same(foldProgress([{ currentActorIdx: 0, state: 'received' }, { currentActorIdx: 0, state: 'processing' }]), [{ currentActorIdx: 0, state: 'processing' }], 'no messages: nothing to carry')
  t.same(
    foldProgress([{ currentActorIdx: 2, state: 'received', fromIdx: 1 }, { currentActorIdx: 2, state: 'processing', fromIdx: 0 }, { currentActorIdx: 2, state: 'completed' }]),
    [{ currentActorIdx: 2, state: 'completed', fromIdx: 1 }],
    "the fold keeps the first report's publisher (the later ones imply nothing before it once it is recorded)",
  )
})
