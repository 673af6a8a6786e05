/**
 * The players' protocol over the WebSocket at `/play` (docs/game-server-contract.md, "The players'
 * protocol"): JSON text frames, validated on both sides.
 */
import { z } from 'zod';

/** Largest frame either side sends; larger frames close the socket with 1009. */
export const MAX_FRAME_BYTES = 4096;
/** Map size in units; positions are within [0, MAP_SIZE]. */
export const MAP_SIZE = 1000;
/** Largest |dx| or |dy| of one move. */
export const MAX_STEP = 10;
/** Radius of `near` chat and of the players shown in a snapshot. */
export const NEAR_RADIUS = 150;
/** Most other players in one snapshot. */
export const SNAPSHOT_MAX_PLAYERS = 32;
export const MAX_CHAT_CHARS = 200;
/** A connection must log in within this long. */
export const LOGIN_TIMEOUT_MS = 10_000;
/** Malformed messages tolerated on one logged-in connection before it is closed with 1008 (before login,
 * the first one closes it). */
export const MAX_MALFORMED = 20;

export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  policy: 1008,
  tooBig: 1009,
  loginTimeout: 4000,
  maintenance: 4001,
  draining: 4002,
  kicked: 4003,
  duplicate: 4004,
  full: 4005,
  /** A newer login with the same name took over this session (this connection had stopped answering). */
  replaced: 4006,
  /** The client did not read what the server sent (over the buffer cap for several seconds). */
  tooSlow: 4007,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** Why a login was refused; each has its close code. */
export const RefusalReason = {
  maintenance: 'maintenance',
  draining: 'draining',
  duplicate: 'duplicate',
  full: 'full',
} as const;
export type RefusalReason = (typeof RefusalReason)[keyof typeof RefusalReason];

export const REFUSAL_CLOSE_CODE: Readonly<Record<RefusalReason, CloseCode>> = {
  maintenance: CloseCode.maintenance,
  draining: CloseCode.draining,
  duplicate: CloseCode.duplicate,
  full: CloseCode.full,
};

export const playerNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,32}$/, '1 to 32 letters, digits, "_" or "-"');

const step = z.number().min(-MAX_STEP).max(MAX_STEP);
/**
 * True when `text` has a character that must not reach a player's screen: a C0 or C1 control character
 * (newline included: chat and notices are one line), DEL, or an invisible direction mark or override
 * (U+061C, U+200E/F, U+2028–202E, U+2066–2069) that makes text read other than it is written.
 */
export function hasControlCharacters(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (
      code < 0x20 ||
      (code >= 0x7f && code <= 0x9f) ||
      code === 0x061c ||
      code === 0x200e ||
      code === 0x200f ||
      (code >= 0x2028 && code <= 0x202e) ||
      (code >= 0x2066 && code <= 0x2069)
    )
      return true;
  }
  return false;
}

/** A message players read (maintenance, notice, drain): 1 to 500 characters, one line, nothing hidden. */
export const playerMessageSchema = z
  .string()
  .min(1)
  .max(500, 'at most 500 characters')
  .refine((text) => !hasControlCharacters(text), 'no control or text-direction characters (one line)');

// No control characters in chat: they would reach other players' screens.
const chatText = z
  .string()
  .min(1)
  .max(MAX_CHAT_CHARS)
  .refine((text) => !hasControlCharacters(text), 'no control or text-direction characters');

export const clientMessageSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('login'), name: playerNameSchema }),
  z.strictObject({ type: z.literal('move'), dx: step, dy: step }),
  z.strictObject({ type: z.literal('chat'), text: chatText, scope: z.enum(['all', 'near']).default('all') }),
  z.strictObject({ type: z.literal('leave') }),
]);
export type ClientMessage = z.infer<typeof clientMessageSchema>;
export type MoveInput = Extract<ClientMessage, { type: 'move' }>;
export type ChatInput = Extract<ClientMessage, { type: 'chat' }>;

const maintenanceSchema = z.object({
  enabled: z.boolean(),
  message: z.string().nullable(),
  startsAt: z.string().nullable(),
});
export type MaintenanceState = z.infer<typeof maintenanceSchema>;

/**
 * An announcement (`POST /ops/notice`): information for players, e.g. maintenance tomorrow at 04:00;
 * nothing changes on the server, logins stay open.
 */
const announcementSchema = z.object({
  type: z.literal('notice'),
  kind: z.literal('announcement'),
  message: z.string(),
  startsAt: z.string().nullable(),
  endsAt: z.string().nullable(),
});
export type Announcement = z.infer<typeof announcementSchema>;

/** Everything the server sends; bots validate with it. */
export const serverMessageSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('welcome'),
    name: z.string(),
    instance: z.string(),
    version: z.string(),
    x: z.number(),
    y: z.number(),
    tickRate: z.number(),
    maintenance: maintenanceSchema,
  }),
  z.object({
    type: z.literal('snapshot'),
    tick: z.number(),
    x: z.number(),
    y: z.number(),
    /** `[name, x, y]` of nearby players (compact: snapshots are the bulk of the traffic). */
    players: z.array(z.tuple([z.string(), z.number(), z.number()])),
  }),
  z.object({
    type: z.literal('chat'),
    from: z.string(),
    text: z.string(),
    scope: z.enum(['all', 'near']),
  }),
  z.discriminatedUnion('kind', [
    maintenanceSchema.extend({ type: z.literal('notice'), kind: z.literal('maintenance') }),
    announcementSchema,
  ]),
  z.object({
    type: z.literal('drain'),
    message: z.string(),
    deadline: z.string(),
    secondsLeft: z.number(),
  }),
  z.object({ type: z.literal('bye'), reason: z.string(), saved: z.boolean() }),
  z.object({
    type: z.literal('refused'),
    reason: z.enum(['maintenance', 'draining', 'duplicate', 'full']),
    message: z.string(),
  }),
  z.object({ type: z.literal('error'), message: z.string() }),
]);
export type ServerMessage = z.infer<typeof serverMessageSchema>;

/** A WebSocket message's bytes as UTF-8 text. */
export function rawText(data: Buffer | ArrayBuffer | Buffer[]): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

/** The first issue of a failed parse as `field: message`, for error replies and logs. */
export function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid message';
  const path = issue.path.join('.');
  return path ? `${path}: ${issue.message}` : issue.message;
}
