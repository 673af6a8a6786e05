/**
 * Identity: who is acting (API tokens, the local OS user, schedules) and what they may do (the access
 * policy). The server authenticates with tokens; a CLI holding the embedded store acts as the local admin.
 */
export { createAccessPolicy, roleAtLeast, roleRank, rolesFrom } from './policy.ts';
export {
  LOCAL_ADMIN_TOKEN_NAME,
  checkTokenFormat,
  cliActor,
  localActor,
  publishServe,
  readServeDiscovery,
  storeBusyError,
} from './local.ts';
export type { ServeDiscovery } from './local.ts';
export {
  TOKEN_LIKE_RE,
  TOKEN_PREFIX,
  generateToken,
  hashToken,
  tokenExpiryMs,
  tokenId,
  tokenMatches,
} from './tokens.ts';
