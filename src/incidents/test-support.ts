import type { PageInput, PageView, Pager } from '../ops/contracts.ts';

/* For tests of incidents and of what builds on them (routes, CLI). */

type Notify = Parameters<Pager['notify']>[0];

/** A Pager that records what incidents ask of it; pages are idempotent by dedup key like the real one. */
export class FakePager implements Pager {
  pages = new Map<string, PageInput>();
  pageCalls: PageInput[] = [];
  notes: Notify[] = [];
  acks: string[] = [];
  resolves: string[] = [];
  page = (input: PageInput): Promise<PageView> => {
    this.pageCalls.push(input);
    if (!this.pages.has(input.dedupKey)) this.pages.set(input.dedupKey, input);
    return Promise.resolve({
      id: `p-${[...this.pages.keys()].indexOf(input.dedupKey) + 1}`,
      dedupKey: input.dedupKey,
      incidentId: input.incidentId,
      subject: input.subject,
      severity: input.severity,
      status: 'triggered',
      level: 0,
      round: 0,
      createdAt: '2026-03-01T10:00:00.000Z',
    });
  };
  notify = (input: Notify): Promise<void> => {
    this.notes.push(input);
    return Promise.resolve();
  };
  acknowledgeIncident = (id: string): Promise<number> => {
    this.acks.push(id);
    return Promise.resolve(1);
  };
  resolveIncident = (id: string): Promise<number> => {
    this.resolves.push(id);
    return Promise.resolve(1);
  };
  pagesOf = (): Promise<PageView[]> => Promise.resolve([]);
}
