import { describe, expect, it } from 'vitest';
import {
  normaliseStatement,
  parseSlowLog,
  quoteIdentifier,
  sameStatement,
  statementDigest,
  statementPreview,
  timeToSeconds,
} from './mysql-ops.ts';

describe('mysql-ops helpers (pure)', () => {
  it('folds literals so one query shape counts once', () => {
    expect(normaliseStatement("SELECT * FROM players WHERE name = 'O''Brien' AND level > 10")).toBe(
      'SELECT * FROM players WHERE name = ? AND level > ?',
    );
    expect(normaliseStatement('SELECT id FROM t2 WHERE id IN (1, 2, 3,4) AND x = -1.5e3;')).toBe(
      'SELECT id FROM t2 WHERE id IN (?+) AND x = ?',
    );
    expect(normaliseStatement('UPDATE  guilds\n SET   gold = 0x1F WHERE id = "a\\"b"')).toBe(
      'UPDATE guilds SET gold = ? WHERE id = ?',
    );
  });

  it('parses MariaDB and MySQL slow log files, skipping banners, SET timestamp and use lines', () => {
    const mariadb = [
      '/usr/sbin/mariadbd, Version: 10.11.6-MariaDB-log (Debian 12). started with:',
      'Tcp port: 3306  Unix socket: /run/mysqld/mysqld.sock',
      'Time                Id Command  Argument',
      '# Time: 240101 10:00:00',
      '# User@Host: game[game] @ localhost []',
      '# Thread_id: 8  Schema: gamedb  QC_hit: No',
      '# Query_time: 2.500000  Lock_time: 0.000100  Rows_sent: 1  Rows_examined: 5000',
      '# Rows_affected: 0  Bytes_sent: 64',
      'use gamedb;',
      'SET timestamp=1704103200;',
      'SELECT *',
      '  FROM players WHERE id = 42;',
    ].join('\n');
    const mysql = [
      '# Time: 2024-01-01T10:00:01.123456Z',
      '# User@Host: game[game] @ localhost []  Id:    12',
      '# Query_time: 0.750000  Lock_time: 0.000000 Rows_sent: 0  Rows_examined: 10',
      'SET timestamp=1704103201;',
      "UPDATE guilds SET gold = 1 WHERE name = 'x';",
    ].join('\n');
    const entries = parseSlowLog(`${mariadb}\n${mysql}\n`);
    expect(entries).toEqual([
      {
        sql: 'SELECT *\n  FROM players WHERE id = 42;',
        queryTime: 2.5,
        lockTime: 0.0001,
        rowsSent: 1,
        rowsExamined: 5000,
        at: '240101 10:00:00',
      },
      {
        sql: "UPDATE guilds SET gold = 1 WHERE name = 'x';",
        queryTime: 0.75,
        lockTime: 0,
        rowsSent: 0,
        rowsExamined: 10,
        at: '2024-01-01T10:00:01.123456Z',
      },
    ]);
  });

  it('reads TIME values as seconds', () => {
    expect(timeToSeconds('00:00:01.500000')).toBe(1.5);
    expect(timeToSeconds('25:00:00')).toBe(90_000);
    expect(timeToSeconds('nonsense')).toBe(0);
  });

  it('compares the running statement with what the kill was approved for', () => {
    const running = { user: 'game', fullStatement: 'SELECT  SLEEP(60)\n/* report */' };
    expect(
      sameStatement(running, {
        id: 1,
        user: 'game',
        statementDigest: statementDigest(running.fullStatement),
      }),
    ).toEqual([]);
    expect(
      sameStatement(running, { id: 1, user: 'game', statementDigest: statementDigest('SELECT SLEEP(60)') }),
    ).toEqual(['statement']);
    expect(sameStatement(running, { id: 1, user: 'other', statementPrefix: 'SELECT SLEEP(60)' })).toEqual([
      'user',
    ]);
    expect(sameStatement(running, { id: 1, user: 'game' })).toEqual(['statement']);
  });

  it('shows 100 characters of a statement and quotes identifiers', () => {
    expect(statementPreview(`SELECT ${'x'.repeat(200)}`)).toHaveLength(100);
    expect(quoteIdentifier('we`ird')).toBe('`we``ird`');
  });
});
