import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InputError } from '../../core/index.ts';
import type { ObjectRecord, ObjectWriter } from '../types.ts';
import {
  clientOptionFile,
  decodeSegment,
  DumpSplitter,
  encodeSegment,
  headerName,
  headerNameComplete,
  optionFileValue,
  parseObjectName,
  renameDatabases,
} from './mysql-dump.ts';

/** Objects in memory, for splitting tests only. */
class MemoryObjects {
  readonly done = new Map<string, Buffer>();
  readonly order: string[] = [];
  readonly aborted: string[] = [];
  readonly open = new Set<string>();
  writes = 0;
  opener = (name: string): ObjectWriter => {
    if (this.order.includes(name)) throw new Error(`opened twice: ${name}`);
    this.order.push(name);
    this.open.add(name);
    const parts: Buffer[] = [];
    return {
      write: (chunk) => {
        this.writes += 1;
        parts.push(Buffer.from(chunk));
        return Promise.resolve();
      },
      end: () => {
        this.open.delete(name);
        const bytes = Buffer.concat(parts);
        this.done.set(name, bytes);
        return Promise.resolve({ name, plainSize: bytes.length } as ObjectRecord);
      },
      abort: () => {
        this.open.delete(name);
        this.aborted.push(name);
        return Promise.resolve();
      },
    };
  };
  text(name: string): string {
    const b = this.done.get(name);
    if (!b) throw new Error(`no object ${name}; have ${[...this.done.keys()].join(', ')}`);
    return b.toString('utf8');
  }
}

/** A dump in the shape mariadb-dump 10.11 writes (multi-line INSERTs, a trigger, a view, events, routines). */
function sampleDump(rows = 3): string {
  const rowLines = Array.from({ length: rows }, (_, i) => `(${i + 1},'name ${i};\\n\\'q\\'',0.1)`);
  return `/*M!999999\\- enable the sandbox mode */ 
-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)
--
-- Host: 127.0.0.1    Database: gamedb
-- ------------------------------------------------------
-- Server version	10.11.19-MariaDB

/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!40101 SET NAMES utf8mb4 */;
/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;
/*!40103 SET TIME_ZONE='+00:00' */;

--
-- Current Database: \`gamedb\`
--

CREATE DATABASE /*!32312 IF NOT EXISTS*/ \`gamedb\` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;

USE \`gamedb\`;

--
-- Table structure for table \`players\`
--

DROP TABLE IF EXISTS \`players\`;
CREATE TABLE \`players\` (
  \`id\` int(11) NOT NULL,
  \`name\` varchar(100) DEFAULT NULL,
  \`f\` float DEFAULT NULL,
  PRIMARY KEY (\`id\`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

--
-- Dumping data for table \`players\`
--

/*!40000 ALTER TABLE \`players\` DISABLE KEYS */;
INSERT INTO \`players\` VALUES
${rowLines.join(',\n')};
INSERT INTO \`players\` VALUES (100,'one line;',NULL);
/*!40000 ALTER TABLE \`players\` ENABLE KEYS */;
/*!50003 SET @saved_sql_mode       = @@sql_mode */ ;
DELIMITER ;;
/*!50003 CREATE*/ /*!50017 DEFINER=\`root\`@\`localhost\`*/ /*!50003 TRIGGER trg BEFORE INSERT ON players FOR EACH ROW SET NEW.name = IFNULL(NEW.name,'anon') 
*/;;
DELIMITER ;
/*!50003 SET sql_mode              = @saved_sql_mode */ ;

--
-- Table structure for table \`odd%name-1\`
--

DROP TABLE IF EXISTS \`odd%name-1\`;
CREATE TABLE \`odd%name-1\` (\`x\` int) ENGINE=InnoDB;

--
-- Dumping data for table \`odd%name-1\`
--

/*!40000 ALTER TABLE \`odd%name-1\` DISABLE KEYS */;
/*!40000 ALTER TABLE \`odd%name-1\` ENABLE KEYS */;

--
-- Temporary table structure for view \`v\`
--

DROP TABLE IF EXISTS \`v\`;
/*!50001 CREATE VIEW \`v\` AS SELECT
 1 AS \`id\` */;

--
-- Dumping events for database 'gamedb'
--
DELIMITER ;;
/*!50106 CREATE*/ /*!50117 DEFINER=\`root\`@\`localhost\`*/ /*!50106 EVENT \`e\` ON SCHEDULE EVERY 1 DAY STARTS '2026-11-26 16:54:50' ON COMPLETION NOT PRESERVE ENABLE DO DELETE FROM players WHERE id < 0 
*/ ;;
DELIMITER ;

--
-- Dumping routines for database 'gamedb'
--
DELIMITER ;;
CREATE DEFINER=\`root\`@\`localhost\` PROCEDURE \`p\`()
BEGIN
--
-- Table structure for table \`not_a_table\`
--
SELECT COUNT(*) FROM \`gamedb\`.\`players\`; END
;;
DELIMITER ;

--
-- Current Database: \`gamedb\`
--

USE \`gamedb\`;

--
-- Final view structure for view \`v\`
--

/*!50001 VIEW \`v\` AS select \`players\`.\`id\` AS \`id\` from \`players\` */;
/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;

-- Dump completed
`;
}

async function split(
  text: string | Buffer,
  chunkBytes: number,
  pieces: number[] = [],
  options: { maxLineBytes?: number } = {},
): Promise<{
  objects: MemoryObjects;
  summary: Awaited<ReturnType<DumpSplitter['finish']>>;
  sections: number;
}> {
  const objects = new MemoryObjects();
  let sections = 0;
  const splitter = new DumpSplitter({
    open: objects.opener,
    chunkBytes,
    onFirstSection: () => (sections += 1),
    ...options,
  });
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text);
  let pos = 0;
  for (const size of pieces) {
    if (pos >= bytes.length) break;
    await splitter.push(bytes.subarray(pos, pos + size));
    pos += size;
  }
  if (pos < bytes.length) await splitter.push(bytes.subarray(pos));
  return { objects, summary: await splitter.finish(), sections };
}

describe('DumpSplitter', () => {
  it('splits a dump into preamble, database, schema, data, post and tail objects', async () => {
    const { objects, summary, sections } = await split(sampleDump(), 1024 * 1024);
    expect(sections).toBe(1);
    expect([...objects.done.keys()].sort()).toEqual(
      [
        '00-preamble.sql',
        'databases/gamedb.sql',
        'tables/gamedb/players/schema.sql',
        'tables/gamedb/players/data-0001.sql',
        'tables/gamedb/players/post.sql',
        'tables/gamedb/odd-25name-2d1/schema.sql',
        'tables/gamedb/v/schema.sql',
        'zz-tail.sql',
      ].sort(),
    );
    expect(objects.text('00-preamble.sql')).toContain("SET TIME_ZONE='+00:00'");
    expect(objects.text('00-preamble.sql')).not.toContain('CREATE DATABASE');
    expect(objects.text('databases/gamedb.sql')).toMatch(/CREATE DATABASE .*`gamedb`[\s\S]*USE `gamedb`;/);
    expect(objects.text('tables/gamedb/players/schema.sql')).toMatch(
      /CREATE TABLE `players`[\s\S]*DISABLE KEYS/,
    );
    const data = objects.text('tables/gamedb/players/data-0001.sql');
    expect(data.startsWith('INSERT INTO `players` VALUES\n(1,')).toBe(true);
    expect(data.endsWith("INSERT INTO `players` VALUES (100,'one line;',NULL);\n")).toBe(true);
    const post = objects.text('tables/gamedb/players/post.sql');
    expect(post).toMatch(/^\/\*!40000 ALTER TABLE `players` ENABLE KEYS \*\/;/);
    expect(post).toContain('TRIGGER trg');
    expect(post).toContain('DELIMITER ;\n');
    const tail = objects.text('zz-tail.sql');
    // The first-pass routines get a USE line; the routine body's fake header is not a section.
    expect(tail.startsWith('USE `gamedb`;\n')).toBe(true);
    expect(tail).toContain('-- Table structure for table `not_a_table`');
    expect(tail).toMatch(
      /EVENT `e`[\s\S]*PROCEDURE `p`[\s\S]*Final view structure[\s\S]*-- Dump completed\n$/,
    );
    expect(summary.tables.map((t) => [t.table, t.view, t.dataObjects])).toEqual([
      ['players', false, 1],
      ['odd%name-1', false, 0],
      ['v', true, 0],
    ]);
    expect(summary.databases).toEqual(['gamedb']);
    expect(objects.open.size).toBe(0);
    // Nothing is lost or duplicated: the objects hold every byte of the dump once (plus one USE line).
    const total = [...objects.done.values()].reduce((n, b) => n + b.length, 0);
    expect(total).toBe(Buffer.byteLength(sampleDump()) + 'USE `gamedb`;\n'.length);
  });

  it('cuts data objects at statement ends past chunkBytes, never inside a statement', async () => {
    const dump = sampleDump(2000);
    const { objects, summary } = await split(dump, 20_000);
    const names = [...objects.done.keys()].filter((n) => n.includes('/data-')).sort();
    expect(names.length).toBeGreaterThan(1);
    expect(summary.tables[0]?.dataObjects).toBe(names.length);
    for (const name of names) {
      const text = objects.text(name);
      expect(text.startsWith('INSERT INTO `players` VALUES')).toBe(true);
      expect(text.endsWith(';\n')).toBe(true);
    }
    const rows = names.map((n) => objects.text(n)).join('');
    expect(rows.match(/^\(\d+,/gm)?.length).toBe(2000);
  });

  it('gives the same objects whatever the chunk boundaries are', async () => {
    const dump = Buffer.from(sampleDump(50));
    const reference = await split(dump, 1500);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 60 }),
        async (pieces) => {
          const { objects } = await split(dump, 1500, pieces);
          expect([...objects.done.keys()].sort()).toEqual([...reference.objects.done.keys()].sort());
          for (const [name, bytes] of reference.objects.done)
            expect(objects.done.get(name)?.equals(bytes)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
    // Every byte boundary once, including `;` | `\n` splits.
    for (let cut = 1; cut < dump.length; cut += 7) {
      const { objects } = await split(dump, 1500, [cut]);
      for (const [name, bytes] of reference.objects.done)
        expect(objects.done.get(name)?.equals(bytes)).toBe(true);
    }
  });

  it('gathers small lines into few writes', async () => {
    const { objects } = await split(sampleDump(2000), 1024 * 1024, Array(100).fill(65536) as number[]);
    expect(objects.writes).toBeLessThan(40);
  });

  it('refuses a line longer than the limit, naming the table', async () => {
    const dump = sampleDump(1).replace("(1,'name 0", `(1,'${'x'.repeat(5000)}`);
    await expect(split(dump, 1024 * 1024, [100, 100, 100], { maxLineBytes: 4096 })).rejects.toThrow(
      /line of the dump in gamedb\.players exceeds 4096 bytes/,
    );
    // Outside statements too (a long line in a schema).
    const ddl = sampleDump(1).replace(
      '`id` int(11) NOT NULL,',
      `\`id\` int(11) NOT NULL COMMENT '${'y'.repeat(5000)}',`,
    );
    await expect(split(ddl, 1024 * 1024, [], { maxLineBytes: 4096 })).rejects.toBeInstanceOf(InputError);
  });

  it('fails a dump cut inside a statement, and abort abandons every open object', async () => {
    const dump = sampleDump(10);
    const cut = dump.indexOf('(5,');
    await expect(split(dump.slice(0, cut), 1024 * 1024)).rejects.toThrow(
      /inside an INSERT statement of gamedb\.players/,
    );
    const objects = new MemoryObjects();
    const splitter = new DumpSplitter({ open: objects.opener, chunkBytes: 1024 });
    await splitter.push(Buffer.from(dump.slice(0, cut)));
    expect(objects.open.size).toBeGreaterThan(0);
    await splitter.abort(new Error('server gone'));
    expect(objects.open.size).toBe(0);
    expect(objects.aborted).toContain('tables/gamedb/players/data-0001.sql');
  });
});

describe('object names', () => {
  it('encodes names into safe segments and back', () => {
    expect(encodeSegment('players')).toBe('players');
    expect(encodeSegment('odd%name-1')).toBe('odd-25name-2d1');
    expect(encodeSegment('..')).toBe('-2e-2e');
    expect(encodeSegment('joueurs_é')).toBe('joueurs_-c3-a9');
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 64 }), (name) => {
        const seg = encodeSegment(name);
        expect(seg).toMatch(/^[A-Za-z0-9_-]+$/);
        expect(decodeSegment(seg)).toBe(name);
      }),
    );
    expect(() => decodeSegment('a/b')).toThrow(InputError);
  });

  it('parses the names the splitter makes and refuses others', () => {
    expect(parseObjectName('tables/gamedb/odd-25name-2d1/data-0012.sql')).toEqual({
      kind: 'data',
      db: 'gamedb',
      table: 'odd%name-1',
      chunk: 12,
    });
    expect(parseObjectName('databases/gamedb.sql')).toEqual({ kind: 'database', db: 'gamedb' });
    expect(parseObjectName('zz-tail.sql')).toEqual({ kind: 'tail' });
    expect(() => parseObjectName('../etc/passwd')).toThrow(/not an object of a MySQL backup/);
  });

  it('reads names from section headers', () => {
    expect(headerName('`a``b`')).toBe('a`b');
    expect(headerName("'gamedb'")).toBe('gamedb');
  });
});

describe('option files', () => {
  it('quotes values so spaces, quotes, # and backslashes survive', () => {
    expect(optionFileValue('p a"s\'s#w\\d')).toBe('"p a\\"s\'s#w\\\\d"');
    const text = clientOptionFile({
      host: '127.0.0.1',
      port: 3307,
      user: 'backup',
      password: 'x y',
      tls: true,
      flavour: 'mariadb',
    });
    expect(text).toBe(
      '[client]\nuser="backup"\npassword="x y"\nhost="127.0.0.1"\nport=3307\nprotocol=TCP\nssl\nssl-verify-server-cert\n',
    );
    const socket = clientOptionFile({
      host: 'h',
      port: 1,
      socketPath: '/run/m.sock',
      user: 'u',
      tls: false,
      flavour: 'mysql',
    });
    expect(socket).toBe('[client]\nuser="u"\nsocket="/run/m.sock"\n');
  });
});

describe('renameDatabases', () => {
  const map = new Map([['gamedb', 'scratch_gamedb']]);
  it('renames CREATE DATABASE, USE and back-quoted qualifiers only', () => {
    const ddl = [
      'CREATE DATABASE /*!32312 IF NOT EXISTS*/ `gamedb` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;',
      'USE `gamedb`;',
      "SELECT COUNT(*) FROM `gamedb`.`players` WHERE note = 'gamedb' AND x = gamedb.y;",
      'CREATE TABLE `gamedb` (id int);',
    ].join('\n');
    expect(renameDatabases(ddl, map)).toBe(
      [
        'CREATE DATABASE /*!32312 IF NOT EXISTS*/ `scratch_gamedb` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;',
        'USE `scratch_gamedb`;',
        "SELECT COUNT(*) FROM `scratch_gamedb`.`players` WHERE note = 'gamedb' AND x = gamedb.y;",
        'CREATE TABLE `gamedb` (id int);',
      ].join('\n'),
    );
    expect(renameDatabases('USE `gamedb`;', new Map([['gamedb', 'a$&b']]))).toBe('USE `a$&b`;');
  });
});

describe('headerNameComplete', () => {
  it('tells a back-quoted name cut by a newline from a whole one (doubled back-quotes inside)', () => {
    expect(headerNameComplete('`players`')).toBe(true);
    expect(headerNameComplete("'gamedb'")).toBe(true);
    expect(headerNameComplete('`a')).toBe(false);
    expect(headerNameComplete('`')).toBe(false);
    expect(headerNameComplete('`a``')).toBe(false);
    expect(headerNameComplete('`a```')).toBe(true);
    expect(headerNameComplete('`a\nb`')).toBe(true);
  });
});
