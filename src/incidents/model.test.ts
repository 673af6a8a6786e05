import { describe, expect, it } from 'vitest';
import { allowedNext, groupTitle, parseIncidentId, runbookFromUrl, transitionAllowed } from './model.ts';
import {
  actionItemLines,
  editedSections,
  mergeSections,
  parsePostmortem,
  renderPostmortem,
} from './postmortem.ts';
import { businessHoursDue } from './hours.ts';
import { csvCell, humanDuration, mdText, zoned } from './render.ts';

describe('incident ids, lifecycle and runbook links', () => {
  it('accepts INC-7, inc-7 and 7 and names anything else', () => {
    expect([parseIncidentId('INC-7'), parseIncidentId('inc-7'), parseIncidentId(' 7 ')]).toEqual([7, 7, 7]);
    for (const bad of ['INC-', 'INC-0', 'x7', '7a', '', 'INC-12345678901'])
      expect(() => parseIncidentId(bad), bad).toThrow(`"${bad}" is not an incident id`);
  });

  it('moves forward (skipping allowed), back only from resolved to investigating', () => {
    expect(transitionAllowed('declared', 'resolved')).toBe(true);
    expect(transitionAllowed('mitigated', 'investigating')).toBe(false);
    expect(transitionAllowed('resolved', 'investigating')).toBe(true);
    expect(transitionAllowed('resolved', 'mitigated')).toBe(false);
    expect(transitionAllowed('closed', 'closed')).toBe(false);
    expect(allowedNext('resolved')).toEqual(['investigating', 'postmortem', 'closed']);
    expect(allowedNext('closed')).toEqual([]);
  });

  it('finds gameops runbooks in runbook_url annotations, nothing in other links', () => {
    expect(runbookFromUrl('gameops:slow-queries')).toBe('slow-queries');
    expect(runbookFromUrl('https://ops.example.com/runbooks/restart-login')).toBe('restart-login');
    expect(runbookFromUrl('https://wiki.example.com/pages/123')).toBeUndefined();
    expect(runbookFromUrl('gameops:../../etc')).toBeUndefined();
    expect(runbookFromUrl('not a url')).toBeUndefined();
    expect(runbookFromUrl(undefined)).toBeUndefined();
  });
});

describe('incident text', () => {
  it('neutralises CSV formulas and quotes cells', () => {
    expect(['=1+1', '+1', '-1', '@x', '\tx', 'plain', 'a,b', 'say "hi"'].map(csvCell)).toEqual([
      "'=1+1",
      "'+1",
      "'-1",
      "'@x",
      "'\tx",
      'plain',
      '"a,b"',
      '"say ""hi"""',
    ]);
  });

  it('keeps Markdown inline text on one line, markup and control characters escaped', () => {
    expect(mdText('a\n# b [x](y) \u001b[2J')).toBe('a \\# b \\[x\\](y) \\u001b\\[2J');
  });

  it('shows times in the display zone and durations in words', () => {
    expect(zoned('2026-03-29T00:30:00Z', 'Europe/Berlin')).toBe('2026-03-29 01:30');
    expect(zoned('2026-03-29T01:30:00Z', 'Europe/Berlin', false)).toBe('03:30');
    expect([humanDuration(45 * 60_000), humanDuration(125 * 60_000), humanDuration(27 * 3_600_000)]).toEqual([
      '45 minutes',
      '2 hours 5 minutes',
      '1 day 3 hours',
    ]);
  });
});

describe('post-mortem sections', () => {
  const generated = {
    Summary: 's2',
    Timeline: 't2',
    'Root Cause Analysis': 'r2',
    'Lessons Learned': 'l2',
    'Action Items': 'a2',
    'Supporting Data': 'd2',
  };

  it('parses sections back from Markdown and refuses what is not a post-mortem', () => {
    const md = renderPostmortem('INC-3', { Summary: 'x', Timeline: '- 10:00 - y' });
    expect(parsePostmortem(md)).toEqual({ Summary: 'x', Timeline: '- 10:00 - y' });
    expect(() => parsePostmortem('# Notes\n## A\nb')).toThrow('starts with "# Incident Post-Mortem');
    expect(() => parsePostmortem('# Incident Post-Mortem: INC-3\n## A\n## A\n')).toThrow('"A" appears twice');
    expect(() => parsePostmortem('# Incident Post-Mortem: INC-3\ntext only')).toThrow('no "## " sections');
  });

  it('regenerates everything but edited sections; Timeline and Action Items always; added sections kept', () => {
    const latest = { ...generated, Summary: 'mine', Timeline: 'old', Appendix: 'extra' };
    const edited = editedSections(generated, latest);
    expect(edited).toEqual(['Summary', 'Timeline', 'Appendix']);
    const merged = mergeSections({ ...generated, Timeline: 't3' }, latest, edited);
    expect(merged).toEqual({ ...generated, Summary: 'mine', Timeline: 't3', Appendix: 'extra' });
    expect(Object.keys(merged).at(-1)).toBe('Appendix');
  });

  it('reads action-item lines with owner and due date', () => {
    expect(
      actionItemLines(
        [
          '- [ ] Add pool metrics (Owner: dba, Due: 2026-03-10, Status: open)',
          '- [x] Raise the pool \\[to 200\\]',
          '* [ ] Plain one (not meta)',
          'prose',
        ].join('\n'),
      ),
    ).toEqual([
      { done: false, title: 'Add pool metrics', owner: 'dba', due: '2026-03-10' },
      { done: true, title: 'Raise the pool [to 200]', owner: undefined, due: undefined },
      { done: false, title: 'Plain one (not meta)', owner: undefined, due: undefined },
    ]);
  });
});

describe('business hours', () => {
  const hours = {
    timezone: 'Asia/Seoul',
    days: ['monday', 'tuesday', 'wednesday', 'thursday', 'friday'],
    start: '09:00',
    end: '18:00',
  };
  it('is due at the end of the business hours it came in, else of the next business day', () => {
    // Monday 2026-03-02 10:00 in Seoul (01:00Z): due 18:00 that day.
    expect(businessHoursDue(new Date('2026-03-02T01:00:00Z'), hours)?.toISOString()).toBe(
      '2026-03-02T09:00:00.000Z',
    );
    // Friday 20:00 Seoul: due Monday 18:00.
    expect(businessHoursDue(new Date('2026-03-06T11:00:00Z'), hours)?.toISOString()).toBe(
      '2026-03-09T09:00:00.000Z',
    );
    // Saturday: Monday.
    expect(businessHoursDue(new Date('2026-03-07T03:00:00Z'), hours)?.toISOString()).toBe(
      '2026-03-09T09:00:00.000Z',
    );
  });
  it('crosses a daylight-saving change in its zone', () => {
    const berlin = { ...hours, timezone: 'Europe/Berlin' };
    // Friday 2026-03-27 19:00 CET: due Monday 2026-03-30 18:00 CEST (16:00Z).
    expect(businessHoursDue(new Date('2026-03-27T18:00:00Z'), berlin)?.toISOString()).toBe(
      '2026-03-30T16:00:00.000Z',
    );
  });
});

describe('groupTitle', () => {
  it('names the group: alertname and its other labels, short; undefined without labels', () => {
    expect(groupTitle('{}/{team="game"}:{alertname="LoginFailing", service="login"}', 'x', 300)).toBe(
      'LoginFailing (service=login)',
    );
    expect(groupTitle('{}:{alertname="GameServerDown"}', 'x', 300)).toBe('GameServerDown');
    expect(groupTitle('login-route:service="login",region="eu \\"west\\""', 'LoginFailing', 300)).toBe(
      'LoginFailing (service=login, region=eu "west")',
    );
    const long = groupTitle(`{}:{alertname="A", a="${'v'.repeat(80)}", b="1", c="2", d="3"}`, 'A', 300)!;
    expect(long).toBe(`A (a=${'v'.repeat(39)}…, b=1, c=2)`);
    expect(groupTitle('{}:{alertname="A", a="1"}', 'A', 5)).toBe('A (a…');
    expect(groupTitle('generic:disk', 'disk', 300)).toBeUndefined();
    expect(groupTitle('heartbeat:db', 'db', 300)).toBeUndefined();
  });
});
